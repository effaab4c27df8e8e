// The exception every failed MPI call turns into: the call's name, the MPI error code and the
// library's own text for it (MPI_Error_string). An InvalidOperationException, so callers that only
// care that "the run failed" need not know about MPI.
namespace Backprop.Kernels.Mpi;

/// <summary>An MPI call returned an error code other than MPI_SUCCESS.</summary>
public sealed class MpiException(string call, int errorCode, string text)
    : InvalidOperationException($"{call} failed: {text} (MPI error code {errorCode}).")
{
    /// <summary>The MPI function that failed (e.g. MPI_Allreduce).</summary>
    public string Call { get; } = call;

    /// <summary>The error code it returned.</summary>
    public int ErrorCode { get; } = errorCode;
}
