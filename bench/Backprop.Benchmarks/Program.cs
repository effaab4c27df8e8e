// BenchmarkDotNet entry point: `./build.sh BenchSuite --bench-args='--filter *Gemm*'`.
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Backprop.Benchmarks.GemmBenchmarks).Assembly).Run(args);
