using Backprop.Kernels.Blas;
using NUnit.Framework;

namespace Backprop.Tests.Blas;

[TestFixture]
public class OpenBlasTests
{
    [Test]
    public void MissingLibrary_NamesThePackageToInstall()
    {
        var (handle, error) = OpenBlas.TryLoad(["libno-such-blas.so.9"]);
        Assert.That(handle, Is.EqualTo((nint)0));
        Assert.That(error, Does.Contain("libno-such-blas.so.9").And.Contain("apt-get install libopenblas0-pthread"));
    }

    [Test]
    public void Loads_AndReportsCoreAndThreads()
    {
        // Deps installs OpenBLAS, so on this project's machines its absence is a failure, not a skip.
        Assert.That(OpenBlas.IsAvailable, Is.True, OpenBlas.UnavailableReason);
        Assert.That(OpenBlas.CoreName, Is.Not.Empty);
        Assert.That(OpenBlas.Config, Does.Contain("OpenBLAS"));
        int old = OpenBlas.Threads;
        OpenBlas.Threads = 1;
        Assert.That(OpenBlas.Threads, Is.EqualTo(1));
        OpenBlas.Threads = old;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => OpenBlas.Threads = 0)!.Message, Does.Contain("got 0"));
    }
}
