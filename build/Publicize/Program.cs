// Publicize: copies an assembly with its internal members made visible to other assemblies, for compiling against.
//   internal -> public, protected internal -> public, private protected -> protected; private members stay private,
//   method bodies are kept as they are. The copy is only a compile-time reference: at run time the original loads.
using Mono.Cecil;

if (args.Length != 2)
{
    Console.Error.WriteLine($"usage: Publicize <input.dll> <output.dll>; got {args.Length} argument(s)");
    return 2;
}

var input = Path.GetFullPath(args[0]);
var output = Path.GetFullPath(args[1]);
if (!File.Exists(input))
{
    Console.Error.WriteLine($"Publicize: input assembly '{input}' does not exist");
    return 2;
}
if (string.Equals(input, output, StringComparison.Ordinal))
{
    Console.Error.WriteLine($"Publicize: output '{output}' is the input; write the copy elsewhere");
    return 2;
}

var resolver = new DefaultAssemblyResolver();
resolver.AddSearchDirectory(Path.GetDirectoryName(input)!);
using var assembly = AssemblyDefinition.ReadAssembly(input, new ReaderParameters { AssemblyResolver = resolver });

var counts = new int[2];
foreach (var module in assembly.Modules)
{
    foreach (var type in module.GetTypes())
    {
        Publicize(type);
    }
}

Directory.CreateDirectory(Path.GetDirectoryName(output)!);
// Written to a temporary name and moved, so an interrupted run never leaves a half-written reference behind.
var temporary = output + ".tmp";
assembly.Write(temporary);
File.Move(temporary, output, overwrite: true);
Console.WriteLine($"Publicize: {Path.GetFileName(input)}: {counts[0]} types, {counts[1]} members opened -> {output}");
return 0;

void Publicize(TypeDefinition type)
{
    var visibility = type.Attributes & TypeAttributes.VisibilityMask;
    var opened = visibility switch
    {
        TypeAttributes.NotPublic => TypeAttributes.Public,
        TypeAttributes.NestedAssembly or TypeAttributes.NestedFamORAssem => TypeAttributes.NestedPublic,
        TypeAttributes.NestedFamANDAssem => TypeAttributes.NestedFamily,
        _ => visibility,
    };
    if (opened != visibility)
    {
        type.Attributes = (type.Attributes & ~TypeAttributes.VisibilityMask) | opened;
        counts[0]++;
    }
    foreach (var method in type.Methods)
    {
        var access = method.Attributes & MethodAttributes.MemberAccessMask;
        var open = Open(access);
        if (open != access)
        {
            method.Attributes = (method.Attributes & ~MethodAttributes.MemberAccessMask) | open;
            counts[1]++;
        }
    }
    foreach (var field in type.Fields)
    {
        var access = (MethodAttributes)(ushort)(field.Attributes & FieldAttributes.FieldAccessMask);
        var open = Open(access);
        if (open != access)
        {
            field.Attributes = (field.Attributes & ~FieldAttributes.FieldAccessMask) | (FieldAttributes)(ushort)open;
            counts[1]++;
        }
    }
}

// Field and method access share their encoding (ECMA-335 II.23.1.5 and II.23.1.10).
static MethodAttributes Open(MethodAttributes access) => access switch
{
    MethodAttributes.Assembly or MethodAttributes.FamORAssem => MethodAttributes.Public,
    MethodAttributes.FamANDAssem => MethodAttributes.Family,
    _ => access,
};
