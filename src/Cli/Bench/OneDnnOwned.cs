// What a oneDNN benchmark object creates and must destroy: primitive descriptors, primitives, memories and 64-byte aligned
// buffers, registered as they are made and released together on Dispose (primitives, memories, descriptors, then buffers),
// so a constructor that fails half way frees what it made by disposing its owner.
using System.Runtime.InteropServices;

namespace Backprop.Cli.Bench;

internal sealed unsafe class OneDnnOwned : IDisposable
{
    private readonly List<nint> _primitives = [], _pds = [], _memories = [], _buffers = [];

    /// <summary>Takes ownership of a primitive descriptor.</summary>
    public nint Pd(nint pd)
    {
        _pds.Add(pd);
        return pd;
    }

    /// <summary>Creates and owns the primitive of <paramref name="pd"/>.</summary>
    public nint Prim(nint pd, string what)
    {
        nint p = OneDnn.PrimitiveCreate(pd, what);
        _primitives.Add(p);
        return p;
    }

    /// <summary>Creates and owns a memory of <paramref name="md"/> over <paramref name="handle"/> (null: set later).</summary>
    public nint Mem(DnnlMemoryDesc* md, nint engine, void* handle)
    {
        nint m = OneDnn.MemoryCreate(md, engine, handle);
        _memories.Add(m);
        return m;
    }

    /// <summary>A zeroed, 64-byte aligned buffer of at least <paramref name="bytes"/> (64 at the least).</summary>
    public void* Buffer(long bytes)
    {
        void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), 64);
        _buffers.Add((nint)p);
        NativeMemory.Clear(p, (nuint)Math.Max(bytes, 64));
        return p;
    }

    public void Dispose()
    {
        foreach (var p in _primitives) OneDnn.PrimitiveDestroy(p);
        foreach (var m in _memories) OneDnn.MemoryDestroy(m);
        foreach (var pd in _pds) OneDnn.PrimitiveDescDestroy(pd);
        foreach (var b in _buffers) NativeMemory.AlignedFree((void*)b);
        _primitives.Clear();
        _memories.Clear();
        _pds.Clear();
        _buffers.Clear();
    }
}
