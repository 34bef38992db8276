//! `netc devices`: the adapters wgpu can use, and the CPU executor.

pub(crate) fn devices() {
    let list = netc_runtime::gpu::adapters();
    if list.is_empty() {
        println!("no GPU adapter found");
    }
    // `--device auto` takes the first hardware GPU, else the CPU executor.
    let hw = list
        .iter()
        .position(|a| !matches!(a.device_type.as_str(), "Cpu" | "Other"));
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == hw { "* " } else { "  " };
        println!(
            "{mark}{}  [{} {}]  {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    println!(
        "{}cpu  [reference executor, gemm crate]",
        if hw.is_none() { "* " } else { "  " }
    );
    println!("(* = what --device auto uses; choose with --device gpu, vulkan, gl, cpu or an adapter-name substring)");
}
