//! Python plugins: the tools that build and test them, and the build.
//!
//! A Python plugin is a module (`app.py` unless `pyproject.toml` says
//! `[tool.keel] module = "…"`) using the SDK in `keel/sdk/python`.
//! componentize-py turns it into a component with the WIT this binary
//! carries; pytest runs its tests against `keel plugin harness`. Both are
//! pinned and installed by keel once, from PyPI, into a virtual
//! environment of their own (`KEEL_PYTHON_TOOLS`, else the user's cache
//! folder), so that a plugin author needs only Python 3.10 or newer.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow, bail};
use sha2::{Digest as _, Sha256};

use crate::project::Project;

/// The componentize-py every Python plugin is built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The pytest `keel plugin test` runs.
pub const PYTEST: &str = "9.2.0";

/// The module componentize-py wraps: imports the plugin's module (which
/// registers its functions) and exports the SDK's handler.
const ENTRY: &str = "keel_plugin_main";

/// The virtual environment holding componentize-py and pytest.
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// The tools, installed first if missing (a minute at most, once).
    pub fn ensure() -> anyhow::Result<Tools> {
        let dir = match std::env::var_os("KEEL_PYTHON_TOOLS") {
            Some(dir) => PathBuf::from(dir),
            None => crate::project::user_cache_dir()?
                .join("keel/python-tools")
                .join(format!("componentize-py-{COMPONENTIZE_PY}-pytest-{PYTEST}")),
        };
        let tools = Tools { dir };
        if tools.dir.join("keel-ready").is_file() {
            return Ok(tools);
        }
        if tools.dir.exists() {
            // An environment the user made (KEEL_PYTHON_TOOLS, e.g. offline).
            let ok = Command::new(tools.python())
                .args(["-c", "import componentize_py, pytest"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                bail!(
                    "{} holds no Python environment with componentize-py and pytest: remove it \
                     (keel installs them), or install componentize-py=={COMPONENTIZE_PY} and \
                     pytest into it",
                    tools.dir.display()
                );
            }
            return Ok(tools);
        }
        tools.install()?;
        Ok(tools)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The environment's Python, with pytest.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    fn install(&self) -> anyhow::Result<()> {
        let python = std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".into());
        let version = Command::new(&python)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .map_err(|e| {
                anyhow!(
                    "Python plugins need Python 3.10 or newer, and `{python}` did not run ({e}): \
                     install Python 3, or set KEEL_PYTHON to its interpreter"
                )
            })?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        let (major, minor) = version.split_once('.').unwrap_or(("0", "0"));
        if (
            major.parse::<u32>().unwrap_or(0),
            minor.parse::<u32>().unwrap_or(0),
        ) < (3, 10)
        {
            bail!(
                "Python plugins need Python 3.10 or newer; `{python}` is {version:?}: \
                 set KEEL_PYTHON to a newer interpreter"
            );
        }
        eprintln!(
            "installing componentize-py {COMPONENTIZE_PY} and pytest {PYTEST} into {} (once)",
            self.dir.display()
        );
        // Built beside the final folder and renamed into place, so that two
        // builds at once never see half an environment.
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let tmp = parent.join(format!(
            ".{}-{}-{:x}",
            self.dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            rand::random::<u64>()
        ));
        let installed = Tools::create(&python, &tmp);
        if let Err(e) = installed {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, &self.dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another build finished first: use its environment.
            if !self.dir.join("keel-ready").is_file() {
                return Err(e)
                    .with_context(|| format!("moving the tools to {}", self.dir.display()));
            }
        }
        Ok(())
    }

    /// A new environment in `tmp` with the pinned tools.
    fn create(python: &str, tmp: &Path) -> anyhow::Result<()> {
        run(Command::new(python).args(["-m", "venv"]).arg(tmp))
            .context("creating a virtual environment for componentize-py (python3 -m venv)")?;
        run(Command::new(tmp.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("componentize-py=={COMPONENTIZE_PY}"),
            &format!("pytest=={PYTEST}"),
        ]))
        .context(
            "installing componentize-py and pytest from PyPI (without network access, \
             install them into a virtual environment yourself and set KEEL_PYTHON_TOOLS to it)",
        )?;
        std::fs::write(tmp.join("keel-ready"), "")?;
        Ok(())
    }
}

/// Runs a command, failing with its output when it fails.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// What `pyproject.toml`'s `[tool.keel]` says: the plugin's module and
/// where its SDK is.
pub struct Layout {
    pub module: String,
    pub sdk: PathBuf,
}

/// Where the SDK of a project is by default: its own copy.
pub const VENDORED_SDK: &str = "keel/sdk/python";

impl Layout {
    /// `[tool.keel]` of the project's `pyproject.toml`.
    fn settings(dir: &Path) -> anyhow::Result<(PathBuf, Option<toml::Value>)> {
        let path = dir.join("pyproject.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Value = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let keel = doc.get("tool").and_then(|t| t.get("keel")).cloned();
        Ok((path, keel))
    }

    /// The SDK folder `[tool.keel] sdk` names, unless it is the project's
    /// own copy.
    pub fn sdk_setting(dir: &Path) -> anyhow::Result<Option<String>> {
        let (_, keel) = Layout::settings(dir)?;
        Ok(keel
            .as_ref()
            .and_then(|k| k.get("sdk"))
            .and_then(|v| v.as_str())
            .filter(|s| s.trim_end_matches('/') != VENDORED_SDK)
            .map(str::to_owned))
    }

    pub fn read(dir: &Path) -> anyhow::Result<Layout> {
        let (path, keel) = Layout::settings(dir)?;
        let text_of = |key: &str| {
            keel.as_ref()
                .and_then(|k| k.get(key))
                .and_then(|v| v.as_str())
        };
        let module = text_of("module").unwrap_or("app").to_owned();
        let valid = !module.is_empty()
            && module.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !valid || module == ENTRY || module == "wit_world" {
            bail!(
                "{}: [tool.keel] module = {module:?} is not a module name keel can build \
                 (letters, digits and '_', dotted for a package)",
                path.display()
            );
        }
        let sdk = dir.join(text_of("sdk").unwrap_or(VENDORED_SDK));
        if !sdk.join("keel_sdk/__init__.py").is_file() {
            bail!(
                "{} holds no Keel Python SDK (keel_sdk): `keel plugin sdk` writes this keel's \
                 copy into keel/, or set [tool.keel] sdk in pyproject.toml",
                sdk.display()
            );
        }
        let file = dir.join(module.replace('.', "/"));
        if !file.with_extension("py").is_file() && !file.join("__init__.py").is_file() {
            bail!(
                "{}: the plugin's module {module:?} is neither {}.py nor a package in {}/: \
                 set [tool.keel] module in pyproject.toml",
                path.display(),
                file.display(),
                file.display()
            );
        }
        Ok(Layout { module, sdk })
    }
}

/// Builds the Python plugin in `project` into `target/python/plugin.wasm`,
/// unless nothing it is built from changed since the last build.
pub fn component(project: &Project) -> anyhow::Result<Vec<u8>> {
    let layout = Layout::read(&project.dir)?;
    let out = project.dir.join("target/python");
    let fingerprint = fingerprint(project, &layout)?;
    let (wasm, stamp) = (out.join("plugin.wasm"), out.join("plugin.fingerprint"));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str())
        && let Ok(bytes) = std::fs::read(&wasm)
    {
        return Ok(bytes);
    }
    let tools = Tools::ensure()?;
    eprintln!("building {} with componentize-py", project.dir.display());
    // Each build has a folder of its own, and its results are renamed into
    // place: two builds of one project at once never share an input or
    // read a half-written component.
    let work = out.join(format!(
        "build-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let built = build_in(&work, project, &layout, &tools).and_then(|built| {
        std::fs::rename(&built, &wasm).with_context(|| format!("writing {}", wasm.display()))?;
        let tmp = work.join("fingerprint");
        std::fs::write(&tmp, &fingerprint)?;
        std::fs::rename(&tmp, &stamp).with_context(|| format!("writing {}", stamp.display()))?;
        std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    built
}

/// Runs componentize-py in `work`: the WIT, the entry module and a copy of
/// the SDK's `keel_sdk` (the plugin's import-time code can reach what
/// componentize-py is given, so never the SDK folder itself); returns the
/// component's path.
fn build_in(
    work: &Path,
    project: &Project,
    layout: &Layout,
    tools: &Tools,
) -> anyhow::Result<PathBuf> {
    let (wit, entry, sdk) = (work.join("wit"), work.join("entry"), work.join("sdk"));
    for dir in [&wit, &entry, &sdk] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (path, text) in crate::scaffold::wit_files() {
        std::fs::write(wit.join(path), text)?;
    }
    std::fs::write(
        entry.join(format!("{ENTRY}.py")),
        format!(
            "# Written by keel plugin build: the component's entry point.\n\
             import {}  # noqa: F401  (registers the plugin's functions)\n\
             from keel_sdk.plugin import Handler  # noqa: F401\n",
            layout.module
        ),
    )?;
    let package = layout.sdk.join("keel_sdk");
    let mut files = Vec::new();
    python_files(&package, &package, &mut files)?;
    for file in files {
        let dest = sdk.join("keel_sdk").join(file.strip_prefix(&package)?);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&file, &dest).with_context(|| format!("copying {}", file.display()))?;
    }
    let wasm = work.join("plugin.wasm");
    let world = format!("keel:plugin/plugin@{}", keel_contract::CURRENT);
    // Through the environment's Python: the `componentize-py` script's
    // first line names the folder the environment was made in.
    let built = Command::new(tools.python())
        .args([
            "-c",
            "import sys; from componentize_py import script; \
             sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ])
        .arg("--quiet")
        .arg("-d")
        .arg(&wit)
        .args(["-w", &world, "componentize"])
        .arg("-p")
        .arg(&entry)
        .arg("-p")
        .arg(&project.dir)
        .arg("-p")
        .arg(&sdk)
        .arg(ENTRY)
        .arg("-o")
        .arg(&wasm)
        .current_dir(&project.dir)
        .output()
        .context("running componentize-py")?;
    if !built.status.success() {
        bail!(
            "componentize-py could not build {} ({}): importing the plugin's module failed, \
             or it registered something twice:\n{}{}",
            project.dir.display(),
            built.status,
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
    }
    Ok(wasm)
}

/// A hash of everything a build reads: the tools' version, the WIT, the
/// module's name and every `.py` file of the project and of the SDK
/// (tests, `target/` and hidden folders excepted).
fn fingerprint(project: &Project, layout: &Layout) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(format!(
        "componentize-py {COMPONENTIZE_PY}\0{}\0",
        layout.module
    ));
    for (path, text) in crate::scaffold::wit_files() {
        h.update(format!("{path}\0{}\0", text.len()));
        h.update(text);
    }
    for root in [&project.dir, &layout.sdk] {
        let mut files = Vec::new();
        python_files(root, root, &mut files)?;
        files.sort();
        for file in files {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            h.update(format!("{}\0{}\0", file.display(), bytes.len()));
            h.update(&bytes);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn python_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // The entry's own type: a link to a folder is not followed (no
        // loops), and a virtual environment is not the plugin's source.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let skip = name.starts_with('.')
                || name == "__pycache__"
                || path.join("pyvenv.cfg").exists()
                || (dir == root && matches!(name.as_str(), "target" | "keel" | "tests"));
            if !skip {
                python_files(root, &path, files)?;
            }
        } else if name.ends_with(".py") {
            files.push(path);
        }
    }
    Ok(())
}
