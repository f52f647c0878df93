// The window presenter's quad: the space's image as it is, nothing lit or blended
// (the light profile's cheapest way to stretch it over the window).
#import bevy_pbr::forward_io::VertexOutput

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var screen_texture: texture_2d<f32>;
@group(#{MATERIAL_BIND_GROUP}) @binding(1) var screen_sampler: sampler;

@fragment
fn fragment(mesh: VertexOutput) -> @location(0) vec4<f32> {
    return textureSample(screen_texture, screen_sampler, mesh.uv);
}
