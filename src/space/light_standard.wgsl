// The standard material's fragment shader in the light profile: base colour (times
// its texture and the vertex colours), lit by the ambient light and the directional
// lights with a plain Lambert term, plus emission; then Bevy's own alpha handling and
// in-shader tone mapping. A software renderer runs every branch of a shader for every
// pixel, so Bevy's full shader (every texture slot, shadow cascades, clustered lights,
// decals) costs it whatever the material uses; this one does only what the space's
// materials use. Forward rendering only: the space uses no deferred pass.
#import bevy_pbr::{
    forward_io::{VertexOutput, FragmentOutput},
    mesh_bindings::mesh,
    mesh_view_bindings::{lights, view},
    pbr_bindings,
    pbr_functions,
    pbr_types,
}

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

    var pbr_input = pbr_types::pbr_input_new();
    pbr_input.material.flags = material.flags;
    pbr_input.material.alpha_cutoff = material.alpha_cutoff;
    pbr_input.frag_coord = in.position;
    pbr_input.world_position = in.world_position;
    base_color = pbr_functions::alpha_discard(pbr_input.material, base_color);

    var color = base_color;
    if (material.flags & pbr_types::STANDARD_MATERIAL_FLAGS_UNLIT_BIT) == 0u {
        let double_sided = (material.flags & pbr_types::STANDARD_MATERIAL_FLAGS_DOUBLE_SIDED_BIT) != 0u;
        let normal = normalize(
            pbr_functions::prepare_world_normal(in.world_normal, double_sided, is_front),
        );
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
    out.color = pbr_functions::main_pass_post_lighting_processing(pbr_input, color);
    return out;
}
