//! Writes every shipped model's lowered GPU programs (the whole `Program`, WGSL sources
//! included) on each read path and under the binding limits the tests use, one file per case,
//! into `$NETC_DUMP_DIR`. A restructuring that claims to be a pure move compares two such dumps
//! byte for byte (`diff -r before/ after/`). Ignored by default: it needs an adapter and writes
//! files; run it with
//! `NETC_DUMP_DIR=/tmp/dump cargo test -p netc-runtime --test suite program_dump:: -- --ignored`.

use netc_compiler::compile;
use netc_compiler::kernels::ReadPath;
use netc_compiler::schedule::Optimizer;
use netc_runtime::cpu::Params;
use netc_runtime::gpu::{test_gpu, Gpu};
use netc_runtime::rng::Rng;
use netc_runtime::session::{Classifier, Executor, Gan, GeneratorLoss};

const MODELS: [&str; 7] = [
    "mlp.net",
    "lenet.net",
    "alexnet.net",
    "vgg11.net",
    "resnet_block.net",
    "gan.yaml",
    "dcgan.net",
];

/// The adapter's own limit (0 stands for it), and the 16 KiB and 32 KiB limits of gpu_vs_cpu.
const LIMITS: [u64; 3] = [0, 16 << 10, 32 << 10];

fn device(reads: ReadPath, limit: u64) -> Gpu {
    let mut g = test_gpu().expect("an adapter");
    g.reads = reads;
    if limit > 0 {
        g.limits.max_storage_buffer_binding_size = limit;
    }
    g
}

fn adam() -> Optimizer {
    Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    }
}

fn dump_model(model: &str, reads: ReadPath, limit: u64, batch: usize) -> String {
    let path = format!("{}/../models/{model}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(path).expect("model file");
    let m = compile(model, &src).unwrap_or_else(|d| panic!("{}", d.render()));
    let mut rng = Rng::new(1);
    if let (Some(gn), Some(dn)) = (m.network("generator"), m.network("discriminator")) {
        let gp: Params<f32> = Params::init(gn, &mut rng);
        let dp: Params<f32> = Params::init(dn, &mut rng);
        let mut out = String::new();
        for loss in [GeneratorLoss::NonSaturating, GeneratorLoss::Minimax] {
            let exec = Executor::Gpu(Box::new(device(reads, limit)));
            let r = Gan::new(
                gn,
                dn,
                gp.clone(),
                dp.clone(),
                adam(),
                adam(),
                loss,
                batch,
                3,
                exec,
            );
            out += &match r {
                Ok(mut gan) => {
                    let (prog, a, b) = gan.gpu_program().expect("a GPU program");
                    format!("{loss:?} passes {a} {b}\n{:#?}\n", prog.program)
                }
                Err(e) => format!("{loss:?} error: {e}\n"),
            };
        }
        return out;
    }
    let net = &m.networks[0];
    let p: Params<f32> = Params::init(net, &mut rng);
    let mut out = String::new();
    for opt in [
        adam(),
        Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 5e-4,
        },
    ] {
        let exec = Executor::Gpu(Box::new(device(reads, limit)));
        out += &match Classifier::new(net, p.clone(), opt, batch, 3, exec) {
            Ok(mut c) => {
                let (prog, pass) = c.gpu_program().expect("a GPU program");
                format!("{opt:?} pass {pass}\n{:#?}\n", prog.program)
            }
            Err(e) => format!("{opt:?} error: {e}\n"),
        };
    }
    out
}

#[test]
#[ignore = "writes the lowered programs for a before/after comparison; needs an adapter"]
fn dump_programs() {
    let dir = std::env::var("NETC_DUMP_DIR").expect("NETC_DUMP_DIR");
    std::fs::create_dir_all(&dir).expect("dump folder");
    for model in MODELS {
        for reads in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            for limit in LIMITS {
                let batch = if model == "mlp.net" { 128 } else { 4 };
                let text = dump_model(model, reads, limit, batch);
                let name = format!("{dir}/{model}-{reads:?}-{limit}.txt");
                std::fs::write(name, text).expect("write dump");
            }
        }
    }
}
