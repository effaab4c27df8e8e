// The `backprop` command line. Bad input exits with code 2 and one message, never a stack trace.
using System.CommandLine;
using Backprop.Cli;

return Commands.Run(args);
