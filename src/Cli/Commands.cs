// The command tree of `backprop`, one file per command (TrainCommand, PredictCommand, EvaluateCommand,
// ExportCommand, GradcheckCommand, BenchCommand, CheckCommand, InfoCommand). Exit codes, for every command:
//   0 success · 1 the run failed (diverged, a write failed, a check failed) · 2 bad input or usage, one line
//   70 an internal error (one line asking for a report; the stack with --verbose) · 130 / 143 SIGINT / SIGTERM
// Results go to stdout, errors and warnings to stderr.
using System.CommandLine;
using Backprop.Kernels.Cpu;

namespace Backprop.Cli;

/// <summary>Thrown for a command-line value that parses but makes no sense; reported as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

internal static class Commands
{
    public const int ExitUsage = 2, ExitInternal = 70;

    public const string ExitCodes = "Exit codes: 0 success; 1 the run failed (diverged, a write failed, a check failed); 2 bad input or usage; " +
        "70 internal error; 130 / 143 stopped by SIGINT / SIGTERM.";

    /// <summary>Test seam: commands added to the tree (e.g. one that fails in a way no command expects).</summary>
    internal static List<Func<Command>> TestCommands { get; } = [];

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var verbose = new Option<bool>("--verbose") { Description = "On an internal error, print the stack trace too.", Recursive = true };
        var root = new RootCommand($"Backprop: a fast trainer for dense neural networks. {ExitCodes}");
        root.Options.Add(verbose);
        root.Subcommands.Add(BenchCommand.Create(stdout));
        root.Subcommands.Add(InfoCommand.Create(stdout));
        root.Subcommands.Add(CheckCommand.Create(stdout));
        root.Subcommands.Add(GradcheckCommand.Create(stdout));
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr));
        root.Subcommands.Add(PredictCommand.Create(stdout, stderr));
        root.Subcommands.Add(EvaluateCommand.Create(stdout, stderr));
        root.Subcommands.Add(ExportCommand.Create(stdout, stderr));
        foreach (var extra in TestCommands) root.Subcommands.Add(extra());
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"backprop: {RankPrefix()}{string.Join("; ", parse.Errors.Select(e => e.Message))} (see 'backprop --help')");
            return ExitUsage;
        }
        try
        {
            // A malformed block-size override would otherwise surface inside the kernels' type initializer.
            try
            {
                GemmBlocking.CheckOverride();
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"backprop: {RankPrefix()}{e.Message}");
            return ExitUsage;
        }
        catch (DllNotFoundException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitUsage;
        }
        catch (Exception e)
        {
            // The last resort: whatever a command did not expect is one line, never a stack trace (unless asked for).
            stderr.WriteLine($"backprop: internal error: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")} " +
                "Please report it with the command line that caused it (add --verbose for the stack trace).");
            if (parse.GetValue(verbose)) stderr.WriteLine(e.ToString());
            return ExitInternal;
        }
    }

    // Under an MPI launcher each rank runs this program: an error names the rank it happened on ("rank 1 of 2: ").
    private static string RankPrefix() => Kernels.Mpi.MpiCommunicator.LauncherRank is var (rank, size) ? $"rank {rank} of {size}: " : "";
}
