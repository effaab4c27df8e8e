// SignalHandlers: a handler replaced after the snapshot (as UCX replaces SIGSEGV's when an MPI library
// loads) is put back, and only replaced ones are reported. SIGILL stands in for the signal here: the
// test replaces its handler with SIG_IGN for a moment, which nothing in a test run depends on.
using System.Runtime.InteropServices;
using Backprop.Kernels.Mpi;
using NUnit.Framework;

namespace Backprop.Tests.Mpi;

[TestFixture]
[NonParallelizable]
public unsafe partial class SignalHandlersTests
{
    private const int SigIll = 4, ActionBytes = 256;

    [LibraryImport("libc.so.6", EntryPoint = "sigaction")]
    private static partial int Sigaction(int signal, byte* action, byte* old);

    [Test]
    public void AReplacedHandler_IsPutBack_AndNamed()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("sigaction's layout is read as Linux's");
        var original = stackalloc byte[ActionBytes];
        Assert.That(Sigaction(SigIll, null, original), Is.EqualTo(0));
        var saved = SignalHandlers.Save();
        Assert.That(saved.Restore(), Is.Empty, "nothing replaced yet");

        var ignore = stackalloc byte[ActionBytes];
        new Span<byte>(ignore, ActionBytes).Clear();
        *(nint*)ignore = 1;     // SIG_IGN, no flags, empty mask
        Assert.That(Sigaction(SigIll, ignore, null), Is.EqualTo(0));
        try
        {
            Assert.That(saved.Restore(), Is.EqualTo(new[] { "SIGILL" }));
            var now = stackalloc byte[ActionBytes];
            Assert.That(Sigaction(SigIll, null, now), Is.EqualTo(0));
            Assert.That(*(nint*)now, Is.EqualTo(*(nint*)original), "the handler from before is back");
            Assert.That(saved.Restore(), Is.Empty);
        }
        finally
        {
            Sigaction(SigIll, original, null);
        }
    }
}
