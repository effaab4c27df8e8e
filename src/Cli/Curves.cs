// The loss and accuracy curves of a run as a PNG (ScottPlot): losses on the left axis, accuracy on the right.
using Backprop.Engine.Training;
using ScottPlot;

namespace Backprop.Cli;

internal static class Curves
{
    public static void Write(string path, IReadOnlyList<EpochMetrics> epochs)
    {
        var plot = new Plot();
        double[] x = epochs.Select(e => (double)e.Epoch).ToArray();
        var train = plot.Add.Scatter(x, epochs.Select(e => e.TrainLoss).ToArray());
        train.LegendText = "train loss";
        if (epochs.All(e => e.TestLoss.HasValue))
        {
            var test = plot.Add.Scatter(x, epochs.Select(e => e.TestLoss!.Value).ToArray());
            test.LegendText = "test loss";
        }
        if (epochs.All(e => e.TestAccuracy.HasValue))
        {
            var acc = plot.Add.Scatter(x, epochs.Select(e => e.TestAccuracy!.Value).ToArray());
            acc.LegendText = "test accuracy";
            acc.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "accuracy";
        }
        plot.Axes.Bottom.Label.Text = "epoch";
        plot.Axes.Left.Label.Text = "loss";
        plot.Title("Training curves");
        plot.ShowLegend();
        plot.SavePng(path, 900, 500);
    }
}
