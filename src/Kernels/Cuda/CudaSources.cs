// The .cu sources embedded in this assembly (native/cuda), compiled on first use by NVRTC for an
// architecture and cached on disk by content hash and architecture
// ($BACKPROP_CUDA_CACHE, else ~/.cache/backprop/cuda): sm_XX gives a cubin, compute_XX PTX.
using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace Backprop.Kernels.Cuda;

/// <summary>The project's CUDA kernels as source, and their compiled images.</summary>
public static class CudaSources
{
    private static readonly Assembly Asm = typeof(CudaSources).Assembly;

    /// <summary>Names of the kernel sources (e.g. "activations.cu").</summary>
    public static IReadOnlyList<string> Kernels { get; } =
        Asm.GetManifestResourceNames().Where(n => n.StartsWith("cuda/", StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => n["cuda/".Length..]).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>Headers the kernels include (e.g. "common.cuh").</summary>
    public static IReadOnlyList<(string Name, string Text)> Headers { get; } =
        Asm.GetManifestResourceNames().Where(n => n.StartsWith("cuda/", StringComparison.Ordinal) && n.EndsWith(".cuh", StringComparison.Ordinal))
            .Select(n => (n["cuda/".Length..], Read(n["cuda/".Length..]))).ToArray();

    /// <summary>The text of an embedded source or header.</summary>
    public static string Read(string name)
    {
        using var s = Asm.GetManifestResourceStream("cuda/" + name) ?? throw new FileNotFoundException($"no embedded CUDA source '{name}'; the sources are {string.Join(", ", Kernels)}.");
        using var r = new StreamReader(s, Encoding.UTF8);
        return r.ReadToEnd();
    }

    /// <summary>Compiles <paramref name="kernel"/> for <paramref name="arch"/> (no cache).</summary>
    public static NvrtcOutput Compile(string kernel, string arch) =>
        Nvrtc.Compile(Read(kernel), kernel, arch, Headers, "-default-device", "--extra-device-vectorization");

    /// <summary>The cache folder.</summary>
    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable("BACKPROP_CUDA_CACHE") is { Length: > 0 } d ? d
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "backprop", "cuda");

    /// <summary>The compiled image (cubin for sm_XX, PTX bytes for compute_XX) from the cache, compiling it on a miss.</summary>
    public static byte[] GetImage(string kernel, string arch)
    {
        string source = Read(kernel);
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(source + "\n" + string.Join("\n", Headers.Select(h => h.Name + "\n" + h.Text)) + "\n" + arch));
        string file = Path.Combine(CacheDirectory, $"{Path.GetFileNameWithoutExtension(kernel)}-{arch}-{Convert.ToHexString(hash)[..16]}.{(arch.StartsWith("sm_", StringComparison.Ordinal) ? "cubin" : "ptx")}");
        if (File.Exists(file)) return File.ReadAllBytes(file);
        var output = Compile(kernel, arch);
        var image = output.Cubin ?? Encoding.ASCII.GetBytes(output.Ptx + "\0");
        Directory.CreateDirectory(CacheDirectory);
        string tmp = file + $".{Environment.ProcessId}.tmp";
        File.WriteAllBytes(tmp, image);
        File.Move(tmp, file, overwrite: true);
        return image;
    }
}
