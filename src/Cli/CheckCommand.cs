// `backprop check cuda`: the Cuda backend on this machine's GPU against the CPU backend (Diagnostics/CudaCheck);
// exit 1 when a check fails, 2 when there is no device.
using System.CommandLine;
using Backprop.Cli.Diagnostics;
using Backprop.Kernels.Cuda;

namespace Backprop.Cli;

internal static class CheckCommand
{
    public static Command Create(TextWriter stdout)
    {
        var check = new Command("check", "Correctness checks of a backend on this machine.");
        var cuda = new Command("cuda", "The Cuda backend on GPU 0 against the CPU backend: every activation, loss and optimizer for 20 steps, and graph replay against eager launches bit for bit. Exit 1 when a check fails.");
        var only = new Option<string?>("--case") { Description = "Only cases whose name contains this text (e.g. gelu, optimizer, graph)." };
        cuda.Options.Add(only);
        cuda.SetAction(p =>
        {
            string device;
            try
            {
                using var probe = CudaGpu.Open();
                device = probe.Description;
            }
            catch (InvalidOperationException e) { throw new UsageException(e.Message); }
            stdout.WriteLine($"checking the Cuda backend on {device} against the CPU backend");
            var results = CudaCheck.Run(() => CudaGpu.Open(), stdout, p.GetValue(only));
            if (results.Count == 0) throw new UsageException($"--case '{p.GetValue(only)}' matches no check.");
            int passed = results.Count(r => r.Passed);
            stdout.WriteLine($"{passed} of {results.Count} checks passed");
            return passed == results.Count ? 0 : 1;
        });
        check.Subcommands.Add(cuda);
        return check;
    }
}
