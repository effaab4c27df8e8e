// ML.NET keeps what a trainer outside its repository needs internal: the trainer and model base classes' abstract
// members are private protected, and the model-file API (ModelSaveContext's writers, ModelLoadContext, the
// LoadableClass registration) is internal (dotnet/machinelearning#4911). This assembly compiles against copies of
// Microsoft.ML.Core and Microsoft.ML.Data with those members opened (build/Publicize) and tells the runtime, with
// the attribute below, that it may reach them in the real assemblies. The runtime honours the attribute; the C#
// compiler does not, hence the publicized copies. The price: the package is built for one ML.NET version, the
// [5.0.1] it references, whose internals it was tested against.
using System.Runtime.CompilerServices;

[assembly: IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: IgnoresAccessChecksTo("Microsoft.ML.Data")]

namespace System.Runtime.CompilerServices;

/// <summary>Read by the runtime: this assembly may reach the non-public members of the named assembly.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class IgnoresAccessChecksToAttribute(string assemblyName) : Attribute
{
    /// <summary>The assembly whose members this one may reach.</summary>
    public string AssemblyName { get; } = assemblyName;
}
