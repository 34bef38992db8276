//! Opening adapters in-process (as the test suite and any library user do, without netc's
//! `main`) under an environment without XDG_RUNTIME_DIR (a server, a container, CI) prints no
//! error line: Mesa's device-select Vulkan layer printed "error: XDG_RUNTIME_DIR is invalid or
//! not set in the environment." twice per instance, 298 times in a passing test run.

use std::process::Command;

const CHILD: &str = "NETC_HEADLESS_TEST_CHILD";

#[test]
fn opening_adapters_without_xdg_runtime_dir_prints_no_error_line() {
    if std::env::var_os(CHILD).is_some() {
        // The child: list the adapters and open the test GPU, as the GPU tests do.
        let listed = netc_runtime::gpu::adapters();
        let opened = netc_runtime::gpu::test_gpu();
        println!("{} adapters, opened: {}", listed.len(), opened.is_some());
        return;
    }
    // The test's own name as libtest lists it: the module path within the test executable
    // (`headless::` in runtime/tests/suite), without the crate's name.
    let name = "opening_adapters_without_xdg_runtime_dir_prints_no_error_line";
    let name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    };
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("runs the test binary");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("adapters, opened"), "{stdout}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
