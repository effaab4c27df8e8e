// A device that passes every call to another one; tests derive from it to watch or break a few calls
// (count the host/device traffic, skip a kernel) and leave the rest as they are.
using Backprop.Kernels.Cuda;

namespace Backprop.Tests.Cuda;

internal abstract class DelegatingGpu(IGpuDevice inner) : IGpuDevice
{
    protected IGpuDevice Inner { get; } = inner;
    public string Description => Inner.Description;
    public int Multiprocessors => Inner.Multiprocessors;
    public nint Stream => Inner.Stream;
    public ulong Allocate(long bytes) => Inner.Allocate(bytes);
    public void Free(ulong address) => Inner.Free(address);
    public nint AllocatePinned(long bytes) => Inner.AllocatePinned(bytes);
    public void FreePinned(nint address) => Inner.FreePinned(address);
    public virtual void CopyToDevice(ulong destination, nint source, long bytes) => Inner.CopyToDevice(destination, source, bytes);
    public virtual void CopyToHost(nint destination, ulong source, long bytes) => Inner.CopyToHost(destination, source, bytes);
    public void Synchronize() => Inner.Synchronize();
    public virtual nint GetFunction(string source, string name) => Inner.GetFunction(source, name);
    public virtual void Launch(nint kernel, uint grid, uint block, KernelArgs args) => Inner.Launch(kernel, grid, block, args);
    public nint PrepareGemm(in GemmDesc desc) => Inner.PrepareGemm(desc);
    public void Gemm(nint prepared) => Inner.Gemm(prepared);
    public void BeginCapture() => Inner.BeginCapture();
    public nint EndCapture() => Inner.EndCapture();
    public void LaunchGraph(nint graph) => Inner.LaunchGraph(graph);
    public void DestroyGraph(nint graph) => Inner.DestroyGraph(graph);
    public void Dispose() => Inner.Dispose();
}
