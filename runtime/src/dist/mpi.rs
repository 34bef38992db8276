//! [`Comm`] on MPI (rsmpi): the world communicator of the job mpirun or srun started.

use super::{Comm, DistError, Lane};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

/// MPI counts are C ints: longer buffers go in pieces of this many elements.
const PIECE: usize = 1 << 28;

/// The job's world communicator. `world` and `lane` are declared before `_universe` so they
/// are freed before MPI_Finalize (the universe's drop).
pub(super) struct Mpi {
    world: SimpleCommunicator,
    /// A duplicate of the world for the communication thread (its own message space), where
    /// the library granted MPI_THREAD_SERIALIZED or more.
    lane: Option<MpiLane>,
    rank: usize,
    size: usize,
    local_rank: usize,
    one_machine: bool,
    _universe: Universe,
}

impl Mpi {
    /// Joins the job (MPI_Init_thread asking for MPI_THREAD_SERIALIZED: the main thread and
    /// the communication thread take turns). A panic on any thread of a rank then ends the
    /// whole job instead of leaving the others waiting for it.
    pub(super) fn init() -> Result<Mpi, DistError> {
        let (universe, granted) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| DistError("MPI was initialised twice".into()))?;
        let world = universe.world();
        // Collective: every rank asks for the same level and is granted the same.
        let threads = matches!(
            granted,
            mpi::Threading::Serialized | mpi::Threading::Multiple
        );
        let lane = threads.then(|| MpiLane(world.duplicate()));
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let node = world.split_shared(world.rank());
        let (local_rank, one_machine) = (node.rank() as usize, node.size() == world.size());
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
            lane,
            rank,
            size,
            local_rank,
            one_machine,
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

    fn lane(&self) -> Option<&dyn Lane> {
        self.lane.as_ref().map(|l| l as &dyn Lane)
    }

    fn one_machine(&self) -> bool {
        self.one_machine
    }
}

/// The communication thread's communicator.
struct MpiLane(SimpleCommunicator);

// SAFETY: an MPI communicator is a handle the library lets any thread use under
// MPI_THREAD_SERIALIZED, provided no two threads call MPI at once: the lane is used only by
// the communication thread, while the main thread waits for it before its next MPI call
// (see `Dist::backward_summed`).
unsafe impl Sync for MpiLane {}
unsafe impl Send for MpiLane {}

impl Lane for MpiLane {
    fn sum_f32(&self, v: &mut [f32]) {
        for piece in v.chunks_mut(PIECE) {
            let send = piece.to_vec();
            self.0
                .all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
    }
}
