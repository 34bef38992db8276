//! Per-dispatch timing of a pass: timestamp queries where the adapter has them, else wall
//! clock around each command submitted on its own.

use super::program::Prepared;
use super::{GpuError, GpuProgram, WAIT_LIMIT};
use netc_compiler::schedule::Command;
use std::time::Instant;

/// Time of one dispatch in a profiled pass.
#[derive(Debug, Clone)]
pub struct KernelTime {
    pub label: String,
    pub kernel: String,
    pub seconds: f64,
}

impl GpuProgram {
    /// Runs a pass with every dispatch timed: by timestamp queries when the adapter has them
    /// (`timestamps` = true), else by wall clock around each dispatch submitted on its own.
    pub fn profile(&mut self, pass: usize) -> Result<(Vec<KernelTime>, bool), GpuError> {
        let cmds = self.command_names(pass);
        if self.gpu.timestamps {
            Ok((self.profile_timestamps(pass, &cmds)?, true))
        } else {
            Ok((self.profile_wall_clock(pass, &cmds)?, false))
        }
    }

    /// The (label, kernel) of each prepared command of a pass.
    fn command_names(&self, pass: usize) -> Vec<(String, String)> {
        let cmds: Vec<(String, String)> = self.program.passes[pass]
            .commands
            .iter()
            .map(|c| match c {
                Command::Dispatch { kernel, label, .. } => {
                    (label.clone(), self.program.kernels[*kernel].name.clone())
                }
                Command::Copy { .. } => ("copy".into(), "copy_buffer_to_buffer".into()),
                Command::Zero { .. } => ("zero".into(), "clear_buffer".into()),
            })
            .collect();
        // Prepared commands include mirror refreshes the program does not list.
        let mut it = cmds.into_iter();
        self.passes[pass]
            .iter()
            .map(|p| match p {
                Prepared::Mirror { .. } => ("mirror".into(), "copy_buffer_to_texture".into()),
                _ => it.next().unwrap_or_default(),
            })
            .collect()
    }

    /// Times each dispatch of a pass by timestamp queries around its own compute pass, in one
    /// submission.
    fn profile_timestamps(
        &self,
        pass: usize,
        cmds: &[(String, String)],
    ) -> Result<Vec<KernelTime>, GpuError> {
        let n = self.passes[pass].len() as u32;
        let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * n.max(1),
        });
        let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: 16 * n.max(1) as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile read"),
            size: 16 * n.max(1) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        let mut timed = vec![];
        for (i, p) in self.passes[pass].iter().enumerate() {
            match p {
                Prepared::Dispatch {
                    pipeline,
                    bind_group,
                    groups,
                } => {
                    let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &qs,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    self.dispatch(&mut cp, *pipeline, bind_group, *groups);
                    timed.push(i);
                }
                other => self.encode(&mut encoder, std::slice::from_ref(other)),
            }
        }
        // One resolve of the whole set: resolve offsets must be 256-byte aligned.
        encoder.resolve_query_set(&qs, 0..2 * n.max(1), &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16 * n.max(1) as u64);
        self.gpu.queue.submit([encoder.finish()]);
        self.read_times(&read, &timed, cmds)
    }

    /// Maps the resolved timestamps and turns each timed command's pair into seconds.
    fn read_times(
        &self,
        read: &wgpu::Buffer,
        timed: &[usize],
        cmds: &[(String, String)],
    ) -> Result<Vec<KernelTime>, GpuError> {
        let mut times = vec![];
        let (tx, rx) = std::sync::mpsc::channel();
        read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.gpu.wait()?;
        rx.recv_timeout(WAIT_LIMIT)
            .map_err(|_| GpuError::Timeout(WAIT_LIMIT))?
            .map_err(|e| GpuError::Map(e.to_string()))?;
        let period = self.gpu.queue.get_timestamp_period() as f64;
        {
            let view = read
                .get_mapped_range(..)
                .map_err(|e| GpuError::Map(format!("{e:?}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for &i in timed {
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period * 1e-9;
                times.push(KernelTime {
                    label: cmds[i].0.clone(),
                    kernel: cmds[i].1.clone(),
                    seconds: dt,
                });
            }
        }
        read.unmap();
        Ok(times)
    }

    /// Times each command of a pass by wall clock, each submitted on its own and waited for.
    fn profile_wall_clock(
        &self,
        pass: usize,
        cmds: &[(String, String)],
    ) -> Result<Vec<KernelTime>, GpuError> {
        let mut times = vec![];
        for (i, (label, kernel)) in cmds.iter().enumerate() {
            let mut encoder =
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("profile"),
                    });
            self.encode(&mut encoder, &self.passes[pass][i..i + 1]);
            let t0 = Instant::now();
            self.gpu.queue.submit([encoder.finish()]);
            self.gpu.wait()?;
            times.push(KernelTime {
                label: label.clone(),
                kernel: kernel.clone(),
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        Ok(times)
    }
}
