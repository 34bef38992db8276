//! [`Comm`] on MPI (rsmpi): the world communicator of the job mpirun or srun started.

use super::{Comm, DistError};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

/// MPI counts are C ints: longer buffers go in pieces of this many elements.
const PIECE: usize = 1 << 28;

/// The job's world communicator. `world` is declared before `_universe` so it is freed
/// before MPI_Finalize (the universe's drop).
pub(super) struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    _universe: Universe,
}

impl Mpi {
    /// Joins the job (MPI_Init_thread; only the main thread calls MPI). A panic on any thread
    /// of a rank then ends the whole job instead of leaving the others waiting for it.
    pub(super) fn init() -> Result<Mpi, DistError> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| DistError("MPI was initialised twice".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        if size > 1 {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                prev(info);
                eprintln!("error: rank {rank} of {size} panicked; ending the job");
                // SAFETY: MPI is initialised (this hook is set after MPI_Init_thread), and
                // MPI_Abort may be called from any thread of a failing process.
                unsafe {
                    mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
                }
            }));
        }
        Ok(Mpi {
            world,
            rank,
            size,
            local_rank,
            _universe: universe,
        })
    }
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn sum_f32(&self, v: &mut [f32]) {
        for piece in v.chunks_mut(PIECE) {
            let send = piece.to_vec();
            self.world
                .all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
    }

    fn sum_f64(&self, v: &mut [f64]) {
        for piece in v.chunks_mut(PIECE) {
            let send = piece.to_vec();
            self.world
                .all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
    }

    fn any(&self, flag: bool) -> bool {
        let mut any = 0i32;
        self.world
            .all_reduce_into(&i32::from(flag), &mut any, SystemOperation::max());
        any != 0
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        for piece in bytes.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
