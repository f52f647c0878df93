//! How much the renderer draws. A software renderer (Mesa's llvmpipe in virtual machines
//! and remote desktops, SwiftShader in a browser without a GPU) rasterises on the same
//! CPU cores that encode and decode the call, so there the space is drawn light: no
//! multisampling, no lamps (the daylight and a brighter ambient light stay) and half the
//! resolution ([`super::reduced_resolution`]). The overlay's graphics setting (or `--graphics`,
//! or `graphics=` in the page address) overrides the choice.
//!
//! A software renderer also runs every branch of a shader for every pixel, so the light
//! profile swaps two shaders for cheaper ones with the same bindings: the standard
//! material's (`light_standard.wgsl`: base colour, texture, Lambert light, emission,
//! instead of Bevy's every texture slot, shadow cascades and clustered lights) and the
//! overlay's (`light_egui.wgsl`: gamma 2 instead of the exact sRGB curve).

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::shader::Shader;

/// The graphics setting: picked from the renderer, or forced. Its names (`auto`,
/// `full`, `light`) are clap's, for `--graphics` and `graphics=` in the page address
/// alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphicsChoice {
    /// Light on a software renderer, full otherwise.
    #[default]
    Auto,
    /// Multisampling and every lamp.
    Full,
    /// No multisampling, daylight only, half the resolution.
    Light,
}

/// The graphics setting and what it resolved to on this machine's renderer.
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct Graphics {
    /// What the person (or the command line) chose.
    pub choice: GraphicsChoice,
    /// The renderer's adapter, once known, when it is a software one.
    pub software_renderer: Option<String>,
}

impl Graphics {
    /// Whether the space is drawn light now.
    pub fn light(&self) -> bool {
        match self.choice {
            GraphicsChoice::Auto => self.software_renderer.is_some(),
            GraphicsChoice::Full => false,
            GraphicsChoice::Light => true,
        }
    }

    /// What is drawn now and why, for the overlay and `--frame-stats`.
    pub fn describe(&self) -> String {
        match (self.choice, &self.software_renderer) {
            (GraphicsChoice::Auto, Some(adapter)) => {
                format!("light (software renderer: {adapter})")
            }
            (GraphicsChoice::Auto, None) => "full (a hardware renderer)".to_owned(),
            (GraphicsChoice::Full, _) => "full (chosen)".to_owned(),
            (GraphicsChoice::Light, _) => "light (chosen)".to_owned(),
        }
    }
}

/// Where Bevy keeps the standard material's fragment shader.
const STANDARD_FRAGMENT_SHADER: &str = "embedded://bevy_pbr/render/pbr.wgsl";

/// A shader the light profile replaces with a cheaper one of the same interface. The
/// asset is replaced in place, so the renderer rebuilds the pipelines that use it, as
/// it does for a reloaded shader.
pub(super) struct ShaderSwap {
    /// The shader asset (Bevy's or bevy_egui's).
    handle: Handle<Shader>,
    /// The light profile's replacement.
    light: Shader,
    /// The original, kept while the replacement is in place.
    full: Option<Shader>,
}

impl ShaderSwap {
    fn new(handle: Handle<Shader>, source: &'static str, path: &str) -> Self {
        Self {
            handle,
            light: Shader::from_wgsl(source, path),
            full: None,
        }
    }

    /// Puts the replacement in place for the light profile, the original back otherwise.
    fn apply(&mut self, light: bool, shaders: &mut Assets<Shader>) {
        let replaced = if light && self.full.is_none() {
            // The original loads at start-up; replaced once it is there.
            let Some(full) = shaders.get(&self.handle).cloned() else {
                return;
            };
            self.full = Some(full);
            shaders.insert(&self.handle, self.light.clone())
        } else if !light && let Some(full) = self.full.take() {
            shaders.insert(&self.handle, full)
        } else {
            return;
        };
        if let Err(error) = replaced {
            warn!("graphics: a shader could not be swapped: {error}");
        }
    }
}

/// Swaps the standard material's and the overlay's shaders for the light profile's
/// while the space is drawn light, and back (apps that render only).
pub(super) fn swap_shaders(
    graphics: Res<Graphics>,
    asset_server: Option<Res<AssetServer>>,
    shaders: Option<ResMut<Assets<Shader>>>,
    mut swaps: Local<Vec<ShaderSwap>>,
) {
    let (Some(asset_server), Some(mut shaders)) = (asset_server, shaders) else {
        return;
    };
    if swaps.is_empty() {
        *swaps = vec![
            ShaderSwap::new(
                asset_server.load(STANDARD_FRAGMENT_SHADER),
                include_str!("light_standard.wgsl"),
                "meetspace/space/light_standard.wgsl",
            ),
            ShaderSwap::new(
                bevy_egui::render::EGUI_SHADER_HANDLE,
                include_str!("light_egui.wgsl"),
                "meetspace/space/light_egui.wgsl",
            ),
        ];
    }
    let light = graphics.light();
    for swap in swaps.iter_mut() {
        swap.apply(light, &mut shaders);
    }
}

/// A point light of the space's lamps (off when the space is drawn light).
#[derive(Component, Debug, Clone, Copy)]
pub struct Lamp;

/// The ambient light: brighter when the lamps are off, so the rooms stay as bright.
const AMBIENT_FULL: f32 = 250.0;
const AMBIENT_LIGHT: f32 = 700.0;

/// Whether an adapter rasterises in software: by its device type, or by the names
/// software renderers go by (WebGL reports neither type nor vendor plainly).
fn is_software_renderer(device_type: wgpu_types::DeviceType, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    device_type == wgpu_types::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "softpipe",
            "swiftshader",
            "software",
        ]
        .iter()
        .any(|software| name.contains(software))
}

/// Notes the renderer's adapter once it is known.
pub(super) fn note_renderer(
    adapter: Option<Res<RenderAdapterInfo>>,
    mut graphics: ResMut<Graphics>,
    mut noted: Local<bool>,
) {
    let Some(adapter) = adapter else { return };
    if *noted {
        return;
    }
    *noted = true;
    if is_software_renderer(adapter.device_type, &adapter.name) {
        graphics.software_renderer = Some(adapter.name.clone());
    }
    info!("graphics: {}", graphics.describe());
}

/// Keeps the camera's multisampling, the lamps and the ambient light in step with the
/// graphics setting (and gives cameras and lamps spawned later the same).
pub(super) fn apply_graphics(
    graphics: Res<Graphics>,
    mut cameras: Query<(Ref<Camera3d>, &mut Msaa)>,
    mut lamps: Query<(Ref<Lamp>, &mut Visibility)>,
    mut ambient: ResMut<GlobalAmbientLight>,
) {
    let changed = graphics.is_changed();
    let light = graphics.light();
    let msaa = if light { Msaa::Off } else { Msaa::default() };
    for (camera, mut samples) in &mut cameras {
        if changed || camera.is_added() {
            samples.set_if_neq(msaa);
        }
    }
    let shown = if light {
        Visibility::Hidden
    } else {
        Visibility::Inherited
    };
    for (lamp, mut visibility) in &mut lamps {
        if changed || lamp.is_added() {
            visibility.set_if_neq(shown);
        }
    }
    if changed {
        ambient.brightness = if light { AMBIENT_LIGHT } else { AMBIENT_FULL };
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;
    use wgpu_types::DeviceType;

    #[test]
    fn software_renderers_are_known_by_type_or_name() {
        assert!(is_software_renderer(DeviceType::Cpu, "anything"));
        assert!(is_software_renderer(
            DeviceType::Other,
            "llvmpipe (LLVM 19.1.7, 256 bits)"
        ));
        assert!(is_software_renderer(
            DeviceType::Other,
            "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)"
        ));
        assert!(!is_software_renderer(
            DeviceType::DiscreteGpu,
            "NVIDIA GeForce RTX 4070"
        ));
        assert!(!is_software_renderer(
            DeviceType::Other,
            "ANGLE (Intel, Mesa Intel(R) UHD Graphics 620)"
        ));
    }

    #[test]
    fn auto_follows_the_renderer_and_a_choice_overrides_it() {
        let mut graphics = Graphics::default();
        assert!(!graphics.light(), "a hardware renderer (or none known yet)");
        graphics.software_renderer = Some("llvmpipe".into());
        assert!(graphics.light());
        assert_eq!(graphics.describe(), "light (software renderer: llvmpipe)");
        graphics.choice = GraphicsChoice::Full;
        assert!(!graphics.light());
        graphics.choice = GraphicsChoice::Light;
        graphics.software_renderer = None;
        assert!(graphics.light());
        for (name, choice) in [
            ("auto", GraphicsChoice::Auto),
            ("full", GraphicsChoice::Full),
            ("light", GraphicsChoice::Light),
        ] {
            assert_eq!(GraphicsChoice::from_str(name, false), Ok(choice));
        }
        assert!(GraphicsChoice::from_str("ultra", false).is_err());
    }

    #[test]
    fn the_setting_reaches_the_camera_lamps_and_ambient_light() {
        let mut app = App::new();
        app.insert_resource(Graphics {
            choice: GraphicsChoice::Light,
            software_renderer: None,
        })
        .insert_resource(GlobalAmbientLight::default())
        .add_systems(Update, apply_graphics);
        let camera = app
            .world_mut()
            .spawn((Camera3d::default(), Msaa::Sample4))
            .id();
        let lamp = app.world_mut().spawn((Lamp, Visibility::Inherited)).id();
        app.update();
        assert_eq!(app.world().get::<Msaa>(camera), Some(&Msaa::Off));
        assert_eq!(
            app.world().get::<Visibility>(lamp),
            Some(&Visibility::Hidden)
        );
        assert_eq!(
            app.world().resource::<GlobalAmbientLight>().brightness,
            AMBIENT_LIGHT
        );
        app.world_mut().resource_mut::<Graphics>().choice = GraphicsChoice::Full;
        app.update();
        assert_eq!(app.world().get::<Msaa>(camera), Some(&Msaa::Sample4));
        assert_eq!(
            app.world().get::<Visibility>(lamp),
            Some(&Visibility::Inherited)
        );
        assert_eq!(
            app.world().resource::<GlobalAmbientLight>().brightness,
            AMBIENT_FULL
        );
    }

    #[test]
    fn the_light_profile_swaps_a_shader_in_place_and_back() {
        let source = |shader: Option<&Shader>| match shader.map(|shader| &shader.source) {
            Some(bevy::shader::Source::Wgsl(source)) => source.to_string(),
            other => panic!("not a WGSL shader: {other:?}"),
        };
        let mut shaders = Assets::<Shader>::default();
        let mut waiting = ShaderSwap::new(Handle::default(), "// light", "light.wgsl");
        waiting.apply(true, &mut shaders);
        assert!(
            waiting.full.is_none(),
            "nothing to swap before the original loads"
        );

        let handle = shaders.add(Shader::from_wgsl("// full", "full.wgsl"));
        let mut swap = ShaderSwap::new(handle.clone(), "// light", "light.wgsl");
        swap.apply(false, &mut shaders);
        assert_eq!(source(shaders.get(&handle)), "// full");
        swap.apply(true, &mut shaders);
        assert_eq!(source(shaders.get(&handle)), "// light");
        swap.apply(true, &mut shaders);
        assert_eq!(source(shaders.get(&handle)), "// light");
        swap.apply(false, &mut shaders);
        assert_eq!(source(shaders.get(&handle)), "// full");
        assert!(swap.full.is_none());
    }
}
