#!/usr/bin/env bash
# One entry point: ./build.sh <target> [cake arguments]
# Targets: Deps (DepsTrain, DepsTest), Build, Test, Train, Bench, BenchSuite, Pack, Fuzz (see build.cake). Names are case-insensitive.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
if ! command -v dotnet >/dev/null 2>&1; then
  echo "build.sh: the .NET SDK (10.0) is required but 'dotnet' is not on PATH." >&2
  echo "Install it from Microsoft's packages (https://learn.microsoft.com/dotnet/core/install/linux-debian), then rerun." >&2
  exit 1
fi
target="${1:-Build}"
shift || true
dotnet tool restore >/dev/null
exec dotnet cake build.cake --target="$target" "$@"
