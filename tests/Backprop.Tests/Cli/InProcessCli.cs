// The `backprop` command line run in this process, with its stdout and stderr captured: what the CLI
// tests call (`using static Backprop.Tests.Cli.InProcessCli;`).
using Backprop.Cli;

namespace Backprop.Tests.Cli;

internal static class InProcessCli
{
    /// <summary>Runs `backprop args…`: the exit code and what it wrote to stdout and stderr.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Commands.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
