// GEMM epilogues of the dense layer.
//   BiasActivationEpilogue:  z = v + b[col]; preact[row, col] = z (when kept); y = f(z)
//   ResidualEpilogue:        as BiasActivation, hidden[row, col] = f(z) (when kept), y = f(z) + skip[row, col]
//                            (a residual block whose body ends in this layer: the block's add in the store)
//   ActivationGradEpilogue:  v * f'(saved[row, col])   (the previous layer's derivative mask)
//   FiniteCheckEpilogue:     v, and *flag = 1 when v is NaN or infinite (the weight gradient's check)
// All run inside the GEMM's final store, so none needs another pass over the output.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Cpu;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = f(v + bias[col]); also stores v + bias[col] into <c>Preact</c> when it is not null.</summary>
public readonly unsafe struct BiasActivationEpilogue<T, TAct> : IGemmEpilogue<T>
    where T : unmanaged, IFloatingPointIeee754<T>
    where TAct : unmanaged, IActivation<T>
{
    private readonly T* _bias;
    private readonly T* _preact;
    private readonly int _ldPreact;
    private readonly TAct _act;

    /// <summary>bias: [N] (may be null for no bias); preact: [M, ldPreact] or null.</summary>
    public BiasActivationEpilogue(TAct act, T* bias, T* preact, int ldPreact)
    {
        _act = act;
        _bias = bias;
        _preact = preact;
        _ldPreact = ldPreact;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Apply(T value, int row, int col)
    {
        T z = _bias != null ? value + _bias[col] : value;
        if (_preact != null) _preact[(nint)row * _ldPreact + col] = z;
        return _act.Forward(z);
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Apply(Vector256<T> value, int row, int col)
    {
        var z = _bias != null ? value + Vector256.Load(_bias + col) : value;
        if (_preact != null) Vector256.Store(z, _preact + (nint)row * _ldPreact + col);
        return _act.Forward(z);
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Apply(Vector512<T> value, int row, int col)
    {
        var z = _bias != null ? value + Vector512.Load(_bias + col) : value;
        if (_preact != null) Vector512.Store(z, _preact + (nint)row * _ldPreact + col);
        return _act.Forward(z);
    }
}

/// <summary>
/// y = f(v + bias[col]) + skip[row, col]; preact (when not null) receives v + bias[col] and hidden (when not null) f(v + bias[col]).
/// </summary>
public readonly unsafe struct ResidualEpilogue<T, TAct> : IGemmEpilogue<T>
    where T : unmanaged, IFloatingPointIeee754<T>
    where TAct : unmanaged, IActivation<T>
{
    private readonly T* _bias, _preact, _hidden, _skip;
    private readonly int _ld;
    private readonly TAct _act;

    /// <summary>bias: [N] (may be null); preact, hidden (each may be null) and skip: [M, ld].</summary>
    public ResidualEpilogue(TAct act, T* bias, T* preact, T* hidden, T* skip, int ld)
    {
        _act = act;
        _bias = bias;
        _preact = preact;
        _hidden = hidden;
        _skip = skip;
        _ld = ld;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Apply(T value, int row, int col)
    {
        nint at = (nint)row * _ld + col;
        T z = _bias != null ? value + _bias[col] : value;
        if (_preact != null) _preact[at] = z;
        T h = _act.Forward(z);
        if (_hidden != null) _hidden[at] = h;
        return h + _skip[at];
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Apply(Vector256<T> value, int row, int col)
    {
        nint at = (nint)row * _ld + col;
        var z = _bias != null ? value + Vector256.Load(_bias + col) : value;
        if (_preact != null) Vector256.Store(z, _preact + at);
        var h = _act.Forward(z);
        if (_hidden != null) Vector256.Store(h, _hidden + at);
        return h + Vector256.Load(_skip + at);
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Apply(Vector512<T> value, int row, int col)
    {
        nint at = (nint)row * _ld + col;
        var z = _bias != null ? value + Vector512.Load(_bias + col) : value;
        if (_preact != null) Vector512.Store(z, _preact + at);
        var h = _act.Forward(z);
        if (_hidden != null) Vector512.Store(h, _hidden + at);
        return h + Vector512.Load(_skip + at);
    }
}

/// <summary>v · f'(saved[row, col]) with saved the previous layer's output or pre-activation.</summary>
public readonly unsafe struct ActivationGradEpilogue<T, TAct> : IGemmEpilogue<T>
    where T : unmanaged, IFloatingPointIeee754<T>
    where TAct : unmanaged, IActivation<T>
{
    private readonly T* _saved;
    private readonly int _ld;
    private readonly TAct _act;

    /// <summary>saved: [M, ld].</summary>
    public ActivationGradEpilogue(TAct act, T* saved, int ld)
    {
        _act = act;
        _saved = saved;
        _ld = ld;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Apply(T value, int row, int col) => value * _act.Grad(_saved[(nint)row * _ld + col]);

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Apply(Vector256<T> value, int row, int col) => value * _act.Grad(Vector256.Load(_saved + (nint)row * _ld + col));

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Apply(Vector512<T> value, int row, int col) => value * _act.Grad(Vector512.Load(_saved + (nint)row * _ld + col));
}

/// <summary>
/// Stores v unchanged and sets <c>*flag</c> to 1 when v is NaN or infinite (v − v is 0 exactly when v is finite): the
/// weight gradient's finiteness, checked while it is in registers. Threads only ever set the flag, so they may share it.
/// </summary>
public readonly unsafe struct FiniteCheckEpilogue<T> : IGemmEpilogue<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly int* _flag;

    /// <summary>flag: set to 1 on the first non-finite value (the caller clears it).</summary>
    public FiniteCheckEpilogue(int* flag) => _flag = flag;

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Apply(T value, int row, int col)
    {
        if (!T.IsFinite(value)) *_flag = 1;
        return value;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Apply(Vector256<T> value, int row, int col)
    {
        if (!Vector256.EqualsAll(value - value, Vector256<T>.Zero)) *_flag = 1;
        return value;
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Apply(Vector512<T> value, int row, int col)
    {
        if (!Vector512.EqualsAll(value - value, Vector512<T>.Zero)) *_flag = 1;
        return value;
    }
}
