// The standard material's fragment shader in the light profile: base colour (times
// its texture and the vertex colours), lit by the ambient light and the directional
// lights with a plain Lambert term, plus emission; then Bevy's own alpha handling and
// in-shader tone mapping. A software renderer runs every branch of a shader for every
// pixel, so Bevy's full shader (every texture slot, shadow cascades, clustered lights,
// decals) costs it whatever the material uses; this one does only what the space's
// materials use. Forward rendering only: the space uses no deferred pass, and no fog.
//
// It does not import `bevy_pbr::pbr_functions` either: that module brings Bevy's whole
// lighting (shadows, clustered lights, light probes, transmission) for the composer to
// put together before the space is first drawn, about 70 ms of the browser's frame
// that first draws it. The three small steps it took from there are below.
#import bevy_pbr::{
    forward_io::{VertexOutput, FragmentOutput},
    mesh_bindings::mesh,
    mesh_view_bindings::{lights, view},
    pbr_bindings,
    pbr_types,
}
#ifdef TONEMAP_IN_SHADER
#import bevy_core_pipeline::tonemapping::{tone_mapping, screen_space_dither}
#import bevy_render::maths::powsafe
#endif

#ifdef BINDLESS
#import bevy_render::bindless::{bindless_samplers_filtering, bindless_textures_2d}
#import bevy_pbr::pbr_bindings::material_indices
#endif

const INV_PI: f32 = 0.31830988618;

@fragment
fn fragment(in: VertexOutput, @builtin(front_facing) is_front: bool) -> FragmentOutput {
    let slot = mesh[in.instance_index].material_and_lightmap_bind_group_slot & 0xffffu;
#ifdef BINDLESS
    let material = pbr_bindings::material_array[material_indices[slot].material];
#else
    let material = pbr_bindings::material;
#endif

    var base_color = material.base_color;
#ifdef VERTEX_COLORS
    base_color *= in.color;
#endif
#ifdef VERTEX_UVS_A
    if (material.flags & pbr_types::STANDARD_MATERIAL_FLAGS_BASE_COLOR_TEXTURE_BIT) != 0u {
        let uv = (material.uv_transform * vec3(in.uv, 1.0)).xy;
        base_color *= textureSampleBias(
#ifdef BINDLESS
            bindless_textures_2d[material_indices[slot].base_color_texture],
            bindless_samplers_filtering[material_indices[slot].base_color_sampler],
#else
            pbr_bindings::base_color_texture,
            pbr_bindings::base_color_sampler,
#endif
            uv,
            view.mip_bias,
        );
    }
#endif

    base_color = alpha_discard(material.flags, material.alpha_cutoff, base_color);

    var color = base_color;
    if (material.flags & pbr_types::STANDARD_MATERIAL_FLAGS_UNLIT_BIT) == 0u {
        let double_sided = (material.flags & pbr_types::STANDARD_MATERIAL_FLAGS_DOUBLE_SIDED_BIT) != 0u;
        var normal = normalize(in.world_normal);
#ifndef VERTEX_TANGENTS
#ifndef STANDARD_MATERIAL_NORMAL_MAP
        // The back face of a double-sided surface faces the other way (Bevy's
        // `pbr_functions::prepare_world_normal`).
        normal *= select(1.0, -1.0, double_sided && !is_front);
#endif
#endif
        var light = lights.ambient_color.rgb;
        for (var i = 0u; i < lights.n_directional_lights; i += 1u) {
            let directional = lights.directional_lights[i];
            light += directional.color.rgb
                * max(dot(normal, directional.direction_to_light), 0.0) * INV_PI;
        }
        let diffuse = base_color.rgb * (1.0 - material.metallic);
        let emissive = material.emissive.rgb * mix(1.0, view.exposure, material.emissive.a);
        color = vec4(diffuse * light * view.exposure + emissive * base_color.a, base_color.a);
    }

    var out: FragmentOutput;
    out.color = post_lighting(material.flags, in.position.xy, color);
    return out;
}

// Bevy's `pbr_functions::alpha_discard`: opaque ignores alpha; a mask (or alpha to
// coverage without multisampling) draws at full alpha or not at all.
fn alpha_discard(flags: u32, alpha_cutoff: f32, output_color: vec4<f32>) -> vec4<f32> {
    var color = output_color;
    let alpha_mode = flags & pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_RESERVED_BITS;
    if alpha_mode == pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_OPAQUE {
        color.a = 1.0;
    }
#ifdef MAY_DISCARD
    else if alpha_mode == pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_MASK ||
            alpha_mode == pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_ALPHA_TO_COVERAGE {
        if color.a >= alpha_cutoff {
            color.a = 1.0;
        } else {
            discard;
        }
    }
#endif
    return color;
}

// Bevy's `pbr_functions::main_pass_post_lighting_processing` without fog: tone mapping
// and debanding in the shader (a camera without HDR), then the alpha premultiplied as
// the blend state of the material's alpha mode expects.
fn post_lighting(flags: u32, frag_coord: vec2<f32>, input_color: vec4<f32>) -> vec4<f32> {
    var output_color = input_color;
#ifdef TONEMAP_IN_SHADER
    output_color = tone_mapping(output_color, view.color_grading);
#ifdef DEBAND_DITHER
    var output_rgb = powsafe(output_color.rgb, 1.0 / 2.2);
    output_rgb += screen_space_dither(frag_coord);
    // Back to linear: the target's sRGB format applies the curve again.
    output_rgb = powsafe(output_rgb, 2.2);
    output_color = vec4(output_rgb, output_color.a);
#endif
#endif
#ifdef PREMULTIPLY_ALPHA
#ifdef BLEND_PREMULTIPLIED_ALPHA
    // Additive blending goes through the premultiplied blend state with no alpha.
    let alpha_mode = flags & pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_RESERVED_BITS;
    if alpha_mode == pbr_types::STANDARD_MATERIAL_FLAGS_ALPHA_MODE_ADD {
        output_color = vec4(output_color.rgb * output_color.a, 0.0);
    }
#endif
#ifdef BLEND_MULTIPLY
    output_color = vec4(output_color.rgb * output_color.a, output_color.a);
#endif
#endif
    return output_color;
}
