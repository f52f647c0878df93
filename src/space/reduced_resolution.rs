//! Drawing the space at a lower resolution. A software renderer's cost grows with the
//! pixels it fills, so in the light profile the player's camera draws the space at half
//! the window's width and height, and stretches it over the window in one pass before
//! the overlay is drawn, at the window's full resolution.
//!
//! The camera still targets the window: its main pass is told to draw into the corner
//! of its texture (Bevy's [`MainPassResolutionOverride`], made for upscalers), and
//! [`stretch_space`], a post-processing pass, samples that corner over the whole
//! texture. Cursor rays, projected panel corners and screenshots see the window's
//! coordinates either way. Until the stretching pipeline is compiled, the space is
//! drawn at full resolution, so no frame shows the corner alone.

use bevy::asset::{embedded_asset, load_embedded_asset};
use bevy::camera::MainPassResolutionOverride;
use bevy::core_pipeline::FullscreenShader;
use bevy::core_pipeline::schedule::{Core3d, Core3dSystems};
use bevy::ecs::query::QueryItem;
use bevy::prelude::*;
use bevy::render::extract_component::{ExtractComponent, ExtractComponentPlugin};
use bevy::render::render_resource::binding_types::{sampler, texture_2d};
use bevy::render::render_resource::{
    BindGroup, BindGroupEntries, BindGroupLayoutDescriptor, BindGroupLayoutEntries,
    CachedRenderPipelineId, ColorTargetState, ColorWrites, FilterMode, FragmentState, Operations,
    PipelineCache, RenderPassColorAttachment, RenderPassDescriptor, RenderPipelineDescriptor,
    Sampler, SamplerBindingType, SamplerDescriptor, ShaderStages, SpecializedRenderPipeline,
    SpecializedRenderPipelines, TextureFormat, TextureSampleType, TextureViewId,
};
use bevy::render::renderer::{RenderContext, RenderDevice, ViewQuery};
use bevy::render::sync_component::SyncComponent;
use bevy::render::view::{ExtractedView, ViewTarget};
use bevy::render::{
    GpuResourceAppExt, Render, RenderApp, RenderPlugin, RenderStartup, RenderSystems,
};
use bevy::shader::{Shader, ShaderDefVal};
use bevy::window::PrimaryWindow;

use super::graphics::Graphics;
use super::player::Player;

/// The window's width and height are divided by this in the light profile (a quarter
/// of the pixels). `stretch.wgsl` gets it as the shader definition `DIVISOR`.
const DIVISOR: u32 = 2;

/// On the player's camera while the space is drawn at a lower resolution: the size, in
/// physical pixels, its main pass draws at.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReducedResolution {
    size: UVec2,
}

impl SyncComponent for ReducedResolution {
    type Target = (Self, MainPassResolutionOverride);
}

impl ExtractComponent for ReducedResolution {
    type QueryData = &'static Self;
    type QueryFilter = With<Camera>;
    type Out = Self;

    fn extract_component(reduced: QueryItem<'_, '_, Self::QueryData>) -> Option<Self> {
        Some(*reduced)
    }
}

/// The main pass's size for a window of `physical` pixels: its width and height divided
/// by [`DIVISOR`], rounded up as `stretch.wgsl` rounds them.
fn reduced_size(physical: UVec2) -> UVec2 {
    ((physical + UVec2::splat(DIVISOR - 1)) / DIVISOR).max(UVec2::ONE)
}

/// Registers the stretching pass, in apps that render.
pub(super) fn add_stretch_pass(app: &mut App) {
    if !app.is_plugin_added::<RenderPlugin>() {
        return;
    }
    embedded_asset!(app, "stretch.wgsl");
    // Loaded now rather than when the renderer starts: in a browser the load finishes
    // between frames, and the space is drawn stretched from the first frame that can.
    let shader = StretchShader(load_embedded_asset!(app, "stretch.wgsl"));
    app.add_plugins(ExtractComponentPlugin::<ReducedResolution>::default());
    let Some(render_app) = app.get_sub_app_mut(RenderApp) else {
        return;
    };
    render_app
        .insert_resource(shader)
        .init_gpu_resource::<SpecializedRenderPipelines<StretchPipeline>>()
        .add_systems(RenderStartup, init_stretch_pipeline)
        .add_systems(
            Render,
            prepare_stretch_pipelines.in_set(RenderSystems::Prepare),
        )
        .add_systems(
            Core3d,
            stretch_space
                .after(Core3dSystems::MainPass)
                .in_set(Core3dSystems::EarlyPostProcess),
        );
}

/// Reduces the player's camera's resolution while the graphics setting is light, and
/// keeps the reduced size in step with the window's (apps with a window only).
pub(super) fn follow_window(
    mut commands: Commands,
    graphics: Res<Graphics>,
    window: Query<&Window, With<PrimaryWindow>>,
    player: Query<(Entity, Option<&ReducedResolution>), With<Player>>,
) {
    let Ok(window) = window.single() else {
        return;
    };
    let wanted = graphics.light().then(|| ReducedResolution {
        size: reduced_size(window.physical_size()),
    });
    for (entity, current) in &player {
        match (wanted, current) {
            (Some(wanted), Some(current)) if wanted == *current => {}
            (Some(wanted), _) => {
                commands.entity(entity).insert(wanted);
            }
            (None, Some(_)) => {
                commands.entity(entity).remove::<ReducedResolution>();
            }
            (None, None) => {}
        }
    }
}

/// `stretch.wgsl`, in the render world.
#[derive(Resource)]
struct StretchShader(Handle<Shader>);

/// The pipeline that stretches the drawn corner over the whole texture.
#[derive(Resource)]
struct StretchPipeline {
    layout: BindGroupLayoutDescriptor,
    sampler: Sampler,
    fullscreen_shader: FullscreenShader,
    fragment_shader: Handle<Shader>,
}

fn init_stretch_pipeline(
    mut commands: Commands,
    render_device: Res<RenderDevice>,
    fullscreen_shader: Res<FullscreenShader>,
    shader: Res<StretchShader>,
) {
    let layout = BindGroupLayoutDescriptor::new(
        "stretch_space_layout",
        &BindGroupLayoutEntries::sequential(
            ShaderStages::FRAGMENT,
            (
                texture_2d(TextureSampleType::Float { filterable: true }),
                sampler(SamplerBindingType::Filtering),
            ),
        ),
    );
    let sampler = render_device.create_sampler(&SamplerDescriptor {
        mag_filter: FilterMode::Linear,
        min_filter: FilterMode::Linear,
        ..default()
    });
    commands.insert_resource(StretchPipeline {
        layout,
        sampler,
        fullscreen_shader: fullscreen_shader.clone(),
        fragment_shader: shader.0.clone(),
    });
}

impl SpecializedRenderPipeline for StretchPipeline {
    /// The view's main texture format.
    type Key = TextureFormat;

    fn specialize(&self, format: TextureFormat) -> RenderPipelineDescriptor {
        RenderPipelineDescriptor {
            label: Some("stretch_space".into()),
            layout: vec![self.layout.clone()],
            vertex: self.fullscreen_shader.to_vertex_state(),
            fragment: Some(FragmentState {
                shader: self.fragment_shader.clone(),
                shader_defs: vec![ShaderDefVal::UInt("DIVISOR".into(), DIVISOR)],
                targets: vec![Some(ColorTargetState {
                    format,
                    blend: None,
                    write_mask: ColorWrites::ALL,
                })],
                ..default()
            }),
            ..default()
        }
    }
}

/// The stretching pipeline of one view.
#[derive(Component)]
struct ViewStretchPipeline(CachedRenderPipelineId);

/// A view drawn at a reduced resolution, with its stretching pipeline and its main
/// pass's size as they are.
type ReducedView = (
    Entity,
    &'static ExtractedView,
    &'static ReducedResolution,
    Option<&'static ViewStretchPipeline>,
    Option<&'static MainPassResolutionOverride>,
);

/// Gives each view drawn at a reduced resolution its stretching pipeline and, once that
/// is compiled, the main pass's reduced size.
fn prepare_stretch_pipelines(
    mut commands: Commands,
    pipeline_cache: Res<PipelineCache>,
    mut pipelines: ResMut<SpecializedRenderPipelines<StretchPipeline>>,
    stretch: Res<StretchPipeline>,
    views: Query<ReducedView>,
) {
    for (entity, view, reduced, current, current_size) in &views {
        let id = pipelines.specialize(&pipeline_cache, &stretch, view.target_format);
        let mut view = commands.entity(entity);
        if current.is_none_or(|current| current.0 != id) {
            view.insert(ViewStretchPipeline(id));
        }
        let size = pipeline_cache
            .get_render_pipeline(id)
            .is_some()
            .then_some(reduced.size);
        match (size, current_size) {
            (Some(size), Some(current)) if current.0 == size => {}
            (Some(size), _) => {
                view.insert(MainPassResolutionOverride(size));
            }
            (None, Some(_)) => {
                view.remove::<MainPassResolutionOverride>();
            }
            (None, None) => {}
        }
    }
}

/// A view whose main pass draws into the corner: its stretching pipeline is compiled.
type StretchReady = (With<ReducedResolution>, With<MainPassResolutionOverride>);

/// Samples the corner the main pass drew into over the whole of the view's texture.
fn stretch_space(
    view: ViewQuery<(&ViewTarget, &ViewStretchPipeline), StretchReady>,
    stretch: Res<StretchPipeline>,
    pipeline_cache: Res<PipelineCache>,
    mut ctx: RenderContext,
    mut cached_bind_group: Local<Option<(TextureViewId, BindGroup)>>,
) {
    let (target, pipeline) = view.into_inner();
    let Some(pipeline) = pipeline_cache.get_render_pipeline(pipeline.0) else {
        return;
    };
    let post_process = target.post_process_write();
    let source = post_process.source;
    let bind_group = match &mut *cached_bind_group {
        Some((id, bind_group)) if source.id() == *id => bind_group,
        cached => {
            let bind_group = ctx.render_device().create_bind_group(
                "stretch_space",
                &pipeline_cache.get_bind_group_layout(&stretch.layout),
                &BindGroupEntries::sequential((source, &stretch.sampler)),
            );
            &mut cached.insert((source.id(), bind_group)).1
        }
    };
    let mut pass = ctx
        .command_encoder()
        .begin_render_pass(&RenderPassDescriptor {
            label: Some("stretch_space"),
            color_attachments: &[Some(RenderPassColorAttachment {
                view: post_process.destination,
                depth_slice: None,
                resolve_target: None,
                ops: Operations::default(),
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.draw(0..3, 0..1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_is_drawn_at_half_the_window_and_never_empty() {
        assert_eq!(reduced_size(UVec2::new(1280, 720)), UVec2::new(640, 360));
        assert_eq!(reduced_size(UVec2::new(1281, 721)), UVec2::new(641, 361));
        assert_eq!(reduced_size(UVec2::new(1, 1)), UVec2::new(1, 1));
        assert_eq!(reduced_size(UVec2::ZERO), UVec2::ONE);
    }
}
