// Numeric CSV: one sample per line, comma-separated numbers; the first line is a header when any of
// its fields is not a number (or when told). The label column is chosen by name (needs a header) or
// by index (negative counts from the end). Ragged rows, non-numeric cells, NaN and ±Infinity, values
// beyond the float32 range and files without data rows are InvalidDataExceptions naming the file,
// the line and column, and what was expected. A label column that does not exist is an ArgumentException
// (the caller's choice, not the file, is wrong).
using System.Globalization;

namespace Backprop.Engine.Data;

/// <summary>Reads numeric CSV files into a <see cref="Dataset"/>.</summary>
public static class Csv
{
    /// <summary>
    /// Reads <paramref name="path"/>. <paramref name="labelColumn"/> is a column name or an index ("0", "-1" = last); empty
    /// picks a column named "label" when the header has one, else the last column; "none" reads every column as a feature
    /// (data without labels, for predictions).
    /// With <paramref name="classification"/>, labels must be whole numbers >= 0 (classes = largest + 1); otherwise
    /// the label column is one regression target.
    /// </summary>
    public static Dataset Read(string path, string labelColumn = "", bool classification = true, bool? hasHeader = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CSV file '{path}' does not exist.", path);
        var lines = File.ReadAllLines(path);
        int first = 0;
        while (first < lines.Length && lines[first].Trim().Length == 0) first++;
        if (first == lines.Length) throw new InvalidDataException($"CSV file '{path}': expected at least one row; the file is empty.");
        var head = Split(lines[first]);
        bool header = hasHeader ?? head.Any(f => !double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out _));
        int columns = head.Length;
        bool unlabelled = labelColumn.Equals("none", StringComparison.OrdinalIgnoreCase);
        if (columns < (unlabelled ? 1 : 2))
            throw new InvalidDataException($"CSV file '{path}': expected at least 2 columns (features and a label); found {columns}.");
        int label = -1;
        if (!unlabelled)
        {
            if (labelColumn.Length == 0) // default: a column named "label" when there is a header with one, else the last column
                labelColumn = header && head.Any(h => h.Trim().Equals("label", StringComparison.OrdinalIgnoreCase)) ? "label" : "-1";
            if (int.TryParse(labelColumn, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int idx))
            {
                label = idx < 0 ? columns + idx : idx;
                if (label < 0 || label >= columns)
                    throw new ArgumentException($"CSV file '{path}': label column index {idx} is outside the {columns} columns.");
            }
            else
            {
                if (!header) throw new ArgumentException($"CSV file '{path}': label column '{labelColumn}' is a name but the file has no header row.");
                label = Array.FindIndex(head, h => h.Trim().Equals(labelColumn, StringComparison.OrdinalIgnoreCase));
                if (label < 0) throw new ArgumentException($"CSV file '{path}': no column named '{labelColumn}'; the header has {string.Join(", ", head.Select(h => $"'{h.Trim()}'"))}.");
            }
        }
        var features = new List<float>();
        var labels = new List<int>();
        var targets = new List<float>();
        for (int li = header ? first + 1 : first; li < lines.Length; li++)
        {
            if (lines[li].Trim().Length == 0) continue;
            var f = Split(lines[li]);
            if (f.Length != columns)
                throw new InvalidDataException($"CSV file '{path}' line {li + 1}: expected {columns} fields like the first row; found {f.Length}.");
            if (features.Count > Array.MaxLength - columns)
                throw new InvalidDataException($"CSV file '{path}' line {li + 1}: more than {Array.MaxLength} feature values; that is more than one .NET array holds.");
            for (int c = 0; c < columns; c++)
            {
                if (!double.TryParse(f[c], NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
                    throw new InvalidDataException($"CSV file '{path}' line {li + 1} column {c + 1}: expected a number; found '{f[c].Trim()}'.");
                if (!double.IsFinite(v))
                    throw new InvalidDataException(
                        $"CSV file '{path}' line {li + 1} column {c + 1}: expected a finite number; found '{f[c].Trim()}' (NaN and ±Infinity are not accepted).");
                if (c != label || !classification)
                {
                    // Parsed as double, so 1e39 is finite there, but it would be Infinity as the float it is stored as.
                    float x = (float)v;
                    if (!float.IsFinite(x))
                        throw new InvalidDataException(
                            $"CSV file '{path}' line {li + 1} column {c + 1}: found '{f[c].Trim()}', outside the float32 range (±{float.MaxValue.ToString(CultureInfo.InvariantCulture)}).");
                    (c != label ? features : targets).Add(x);
                    continue;
                }
                if (v < 0 || v != Math.Floor(v))
                    throw new InvalidDataException($"CSV file '{path}' line {li + 1}: expected a class label (a whole number >= 0) in column {c + 1}; found '{f[c].Trim()}'.");
                // Below int.MaxValue so that the class count (largest + 1) is an int too.
                if (v >= int.MaxValue)
                    throw new InvalidDataException($"CSV file '{path}' line {li + 1}: class label '{f[c].Trim()}' in column {c + 1} is too large; expected below {int.MaxValue}.");
                labels.Add((int)v);
            }
        }
        if (unlabelled)
        {
            if (features.Count == 0) throw new InvalidDataException($"CSV file '{path}': the file holds no samples; expected data rows; found only a header.");
            return new Dataset(features.ToArray(), null, null, columns, 0);
        }
        if (labels.Count + targets.Count == 0) throw new InvalidDataException($"CSV file '{path}': the file holds no samples; expected data rows; found only a header.");
        int width = columns - 1;
        return classification
            ? new Dataset(features.ToArray(), labels.ToArray(), null, width, labels.Max() + 1)
            : new Dataset(features.ToArray(), null, targets.ToArray(), width, 1);
    }

    private static string[] Split(string line) => line.Split(',');
}
