// The light profile's space, drawn into the top left corner of the view's texture at
// its width and height divided by DIVISOR (rounded up, as `reduced_resolution.rs`
// rounds them), stretched over the whole texture.
#import bevy_core_pipeline::fullscreen_vertex_shader::FullscreenVertexOutput

@group(0) @binding(0) var drawn: texture_2d<f32>;
@group(0) @binding(1) var drawn_sampler: sampler;

@fragment
fn fragment(in: FullscreenVertexOutput) -> @location(0) vec4<f32> {
    let full = vec2<f32>(textureDimensions(drawn));
    let corner = ceil(full / f32(#{DIVISOR}));
    // Half a texel inside the corner's edge at most: filtering past it would blend in
    // the cleared texels beyond.
    let at = clamp(in.uv * corner, vec2(0.5), corner - 0.5);
    return textureSample(drawn, drawn_sampler, at / full);
}
