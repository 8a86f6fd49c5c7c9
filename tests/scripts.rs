//! The README's first command on a fresh machine: `scripts/dev` installs the build's system
//! packages when they are missing, then runs `sendgate dev`. Run on a PATH holding only the
//! handful of tools the scripts use (so no cmake, no C compiler), with `apt-get`, `dpkg-query`
//! and `cargo` replaced by fakes that record what they were asked.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Real tools the scripts may use besides the faked ones.
const TOOLS: [&str; 6] = ["bash", "env", "id", "grep", "dirname", "sed"];

struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(root.join("installed")).unwrap();
        let path = std::env::var_os("PATH").unwrap();
        for tool in TOOLS {
            let real = std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()).unwrap_or_else(|| panic!("{tool} not on PATH"));
            symlink(real, bin.join(tool)).unwrap();
        }
        let fake = |name: &str, body: &str| {
            let p = bin.join(name);
            fs::write(&p, format!("#!/bin/bash\nFAKE={}\n{body}\n", root.display())).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        // apt-get "installs" a package by marking it installed, and cmake and gcc by putting
        // an executable on PATH, as the real packages would.
        fake(
            "apt-get",
            r#"printf '%s\n' "$*" >> "$FAKE/apt.log"
[ "$1" = install ] || exit 0
for p in "$@"; do
  case "$p" in
    -*|install) ;;
    *) : > "$FAKE/installed/$p"
       case "$p" in cmake) exe=cmake ;; gcc) exe=cc ;; *) exe="" ;; esac
       [ -z "$exe" ] || { printf '#!/bin/bash\n' > "$FAKE/bin/$exe"; /bin/chmod +x "$FAKE/bin/$exe"; } ;;
  esac
done"#,
        );
        fake("dpkg-query", r#"p="${!#}"; [ -e "$FAKE/installed/$p" ] || exit 1; printf 'install ok installed'"#);
        fake("sudo", r#"exec "$@""#);
        fake("cargo", r#"printf '%s\n' "$*" >> "$FAKE/cargo.log""#);
        Self { _dir: dir, root }
    }

    fn run(&self, script: &str, args: &[&str]) -> Output {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        Command::new(repo.join(script)).args(args).env_clear().env("PATH", self.root.join("bin")).output().unwrap()
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}

#[test]
fn scripts_dev_installs_the_missing_build_packages_then_runs_sendgate_dev() {
    let m = Machine::new();
    let out = m.run("scripts/dev", &["--listen", "127.0.0.1:0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(m.log("apt.log"), "update -qq\ninstall -y -qq --no-install-recommends gcc cmake libcurl4-openssl-dev\n");
    assert_eq!(m.log("cargo.log"), "run --release -- dev --listen 127.0.0.1:0\n");

    // Once installed, nothing is installed again.
    let out = m.run("scripts/dev", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(m.log("apt.log").lines().count(), 2, "{}", m.log("apt.log"));
    assert_eq!(m.log("cargo.log").lines().last(), Some("run --release -- dev"));
}

#[test]
fn scripts_dev_without_cargo_says_where_to_get_it() {
    let m = Machine::new();
    fs::remove_file(m.root.join("bin/cargo")).unwrap();
    let out = m.run("scripts/dev", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://rustup.rs"));
    assert_eq!(m.log("apt.log"), "", "nothing installed before the toolchain is there");
}
