// The overlay's shader in the light profile: bevy_egui's own (`render/egui.wgsl`) with
// its six `pow` calls per pixel, which a software renderer computes in full for every
// pixel of every glyph, replaced by a square root and a square (the sRGB curve
// approximated as gamma 2). egui multiplies colours in gamma space, as its own
// renderers do; under a white vertex colour the texture comes through unchanged.
struct Transform {
    scale: vec2<f32>,
    translation: vec2<f32>,
}

struct VertexInput {
    @location(0) position: vec2<f32>,
    @location(1) uv: vec2<f32>,
    @location(2) color: vec4<f32>,
}

struct VertexOutput {
    @builtin(position) position: vec4<f32>,
    @location(0) color: vec4<f32>,
    @location(1) uv: vec2<f32>,
}

@group(0) @binding(0) var<uniform> transform: Transform;

#ifdef BINDLESS
@group(1) @binding(0) var image_texture: binding_array<texture_2d<f32>>;
@group(1) @binding(1) var image_sampler: binding_array<sampler>;

struct BindlessOffset {
    offset: u32,
};
var<immediate> offset: BindlessOffset;
#else
@group(1) @binding(0) var image_texture: texture_2d<f32>;
@group(1) @binding(1) var image_sampler: sampler;
#endif

@vertex
fn vs_main(in: VertexInput) -> VertexOutput {
    let position = in.position * transform.scale + transform.translation;
    return VertexOutput(vec4<f32>(position, 0.0, 1.0), in.color, in.uv);
}

@fragment
fn fs_main(in: VertexOutput) -> @location(0) vec4<f32> {
#ifdef BINDLESS
    let image_texture = image_texture[offset.offset];
    let image_sampler = image_sampler[offset.offset];
#endif
    let texture_linear = textureSample(image_texture, image_sampler, in.uv);
    let color_gamma = vec4(sqrt(texture_linear.rgb), texture_linear.a) * in.color;
    return vec4(color_gamma.rgb * color_gamma.rgb, color_gamma.a);
}
