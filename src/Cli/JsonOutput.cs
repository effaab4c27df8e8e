// The JSON settings of every file the CLI writes (bench reports, metrics.json): indented, created once.
using System.Text.Json;

namespace Backprop.Cli;

internal static class JsonOutput
{
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
}
