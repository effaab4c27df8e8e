// Reads the libtorch reference files copied from ../shared/golden into tests/golden.
using System.Text.Json;

namespace Backprop.Tests;

internal sealed record GoldenTensor(int[] Shape, double[] Data)
{
    public float[] ToFloat() => Array.ConvertAll(Data, v => (float)v);
}

internal static class Golden
{
    private static readonly Dictionary<string, JsonDocument> Cache = new();

    public static JsonElement Load(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var doc))
            {
                string path = Path.Combine(AppContext.BaseDirectory, "golden", name + ".json");
                doc = JsonDocument.Parse(File.ReadAllText(path));
                Cache[name] = doc;
            }
            return doc.RootElement;
        }
    }

    public static GoldenTensor Tensor(this JsonElement e)
    {
        var shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var data = e.GetProperty("data").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        return new GoldenTensor(shape, data);
    }

    public static GoldenTensor Tensor(this JsonElement e, string property) => e.GetProperty(property).Tensor();

    public static long[] Labels(this JsonElement e, string property) =>
        e.GetProperty(property).GetProperty("data").EnumerateArray().Select(x => x.GetInt64()).ToArray();
}
