// Whether this process was started by an MPI launcher, told by the environment the launcher gives each
// rank: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE/RANK), a PMIx server (PMIX_RANK: Open MPI 5, srun
// --mpi=pmix, prrte), a PMI-1/2 server (PMI_RANK/PMI_SIZE: MPICH's hydra mpiexec, Intel MPI, srun
// --mpi=pmi2) or MVAPICH's launcher (MV2_COMM_WORLD_SIZE). Without any of them an MPI_Init makes a
// singleton world of one rank.
namespace Backprop.Kernels.Mpi;

/// <summary>Reads the launcher's variables from an environment.</summary>
internal static class MpiLauncher
{
    /// <summary>The variables looked at, in order, with the launcher each one means.</summary>
    internal static readonly IReadOnlyList<(string Variable, string Launcher)> Variables =
    [
        ("OMPI_COMM_WORLD_SIZE", "Open MPI mpirun"),
        ("PMIX_RANK", "a PMIx launcher (Open MPI 5 mpirun, prrte or srun --mpi=pmix)"),
        ("PMI_RANK", "a PMI launcher (MPICH/Intel MPI mpiexec or srun --mpi=pmi2)"),
        ("PMI_SIZE", "a PMI launcher (MPICH/Intel MPI mpiexec or srun --mpi=pmi2)"),
        ("MV2_COMM_WORLD_SIZE", "the MVAPICH launcher"),
    ];

    /// <summary>This process's rank and the world size as the launcher's variables give them (before MPI_Init), else null.</summary>
    internal static (int Rank, int Size)? RankAndSize(Func<string, string?> environment)
    {
        foreach (var (rank, size) in new[] { ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"), ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE") })
            if (int.TryParse(environment(rank), out int r) && int.TryParse(environment(size), out int n) && n > 0 && r >= 0 && r < n) return (r, n);
        return null;
    }

    /// <summary>"LAUNCHER (VARIABLE=value)" for the first launcher variable set in <paramref name="environment"/>, else null.</summary>
    internal static string? Describe(Func<string, string?> environment)
    {
        foreach (var (variable, launcher) in Variables)
        {
            var value = environment(variable);
            if (!string.IsNullOrEmpty(value)) return $"{launcher} ({variable}={value})";
        }
        return null;
    }
}
