// The command tree of `backprop`, one file per command (TrainCommand, GradcheckCommand, ExportCommand,
// BenchCommand, CheckCommand, InfoCommand). Parsing errors and invalid values exit with 2 and one line.
using System.CommandLine;

namespace Backprop.Cli;

/// <summary>Thrown for a command-line value that parses but makes no sense; reported as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

internal static class Commands
{
    public const int ExitUsage = 2;

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var root = new RootCommand("Backprop: a fast trainer for dense neural networks.");
        root.Subcommands.Add(BenchCommand.Create(stdout));
        root.Subcommands.Add(InfoCommand.Create(stdout));
        root.Subcommands.Add(CheckCommand.Create(stdout));
        root.Subcommands.Add(GradcheckCommand.Create(stdout));
        root.Subcommands.Add(TrainCommand.Create(stdout));
        root.Subcommands.Add(ExportCommand.Create(stdout));
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"backprop: {string.Join("; ", parse.Errors.Select(e => e.Message))} (see 'backprop --help')");
            return ExitUsage;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitUsage;
        }
        catch (DllNotFoundException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitUsage;
        }
    }
}
