#!/usr/bin/env bash
# Build cost (issues 8 and 19, P5): clean-build time and peak memory of the same minimal
# Patient app on this project's crates (ours/) and on fhir-sdk 0.16 (fhir-sdk/), and of
# the floor (floor/): the same two API calls on reqwest + rustls + tokio + serde_json
# alone, no token logic, which no HTTP client can build for less.
#
#   bash bench/build-cost/run.sh                 # one round, debug profile, then release
#   ROUNDS=3 bash bench/build-cost/run.sh        # three interleaved rounds, medians reported
#   PROFILES=dev bash bench/build-cost/run.sh    # debug only (PROFILES: any of "dev release")
#
# Downloads are excluded: `cargo fetch` runs first for both apps. Each measured build is
# `cargo build` from an empty private target directory (<app>/target, gitignored) under
# `/usr/bin/time -v`; the apps are interleaved, the order rotating each round, so a change
# in machine load hits all of them. CARGO_BUILD_JOBS is not forced (cargo uses every core).
#
# Peak RSS is GNU time's "Maximum resident set size": the largest single process of the
# build (usually one rustc), not the sum of processes running at once.
#
# Writes the tables to stdout and to bench/results/build-cost.md; per-run logs in
# bench/build-cost/logs/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rounds="${ROUNDS:-1}"
profiles="${PROFILES:-dev release}"
apps=(ours floor fhir-sdk)
logs="$here/logs"
out="$repo/bench/results/build-cost.md"

die() { echo "run.sh: $*" >&2; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: GNU time is needed for -v (peak RSS). Install it: apt-get install time"
/usr/bin/time -v true 2>/dev/null || die "/usr/bin/time does not accept -v: GNU time is needed (BSD/busybox time cannot report peak RSS). Install it: apt-get install time"
command -v cargo >/dev/null || die "cargo not found on PATH"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$rounds'"
for p in $profiles; do
  [[ "$p" == dev || "$p" == release ]] || die "PROFILES may hold only dev and release, got '$p'"
done
# A compiler cache would measure the cache, not the build.
unset RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

mkdir -p "$logs" "$(dirname "$out")"

echo "== fetching dependencies (not timed)"
for app in "${apps[@]}"; do
  (cd "$here/$app" && cargo fetch --quiet) || die "cargo fetch failed for $app"
done

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start="$(load)"
uptime_start="$(uptime)"

# One measured clean build: app profile round -> appends "app profile round wall cpu rss_kib" to $results
results="$logs/results.tsv"
: > "$results"
measure() {
  local app="$1" profile="$2" round="$3"
  local dir="$here/$app" tag="$app-$profile-$round"
  local flags=()
  [[ "$profile" == release ]] && flags=(--release)
  rm -rf "$dir/target"
  echo "== round $round, $profile: $app (load $(load))" >&2
  if ! (cd "$dir" && /usr/bin/time -v -o "$logs/$tag.time" \
      cargo build "${flags[@]}" --target-dir "$dir/target" >"$logs/$tag.log" 2>&1); then
    tail -n 30 "$logs/$tag.log" >&2
    die "the $profile build of $app failed (log: $logs/$tag.log)"
  fi
  local wall user sys rss
  wall="$(awk -F': ' '/Elapsed \(wall clock\) time/ {
      n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$logs/$tag.time")"
  user="$(awk -F': ' '/User time \(seconds\)/ {print $2}' "$logs/$tag.time")"
  sys="$(awk -F': ' '/System time \(seconds\)/ {print $2}' "$logs/$tag.time")"
  rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$logs/$tag.time")"
  local units
  units="$(grep -c '^ *Compiling ' "$logs/$tag.log" || true)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$app" "$profile" "$round" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$rss" "$units" >> "$results"
  echo "   $app: wall ${wall}s, user+sys $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')s, peak RSS $((rss / 1024)) MiB, $units crates compiled (load $(load))" >&2
}


# Markdown table for one profile: medians over the rounds.
table() {
  local profile="$1"
  awk -F'\t' -v profile="$profile" '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $2 == profile { wall[$1] = wall[$1] " " $4; cpu[$1] = cpu[$1] " " $5; rss[$1] = rss[$1] " " $6; units[$1] = $7 }
    END {
      print "| app | wall time | user+sys CPU | peak RSS | crates compiled |"
      print "|---|---:|---:|---:|---:|"
      split("ours floor fhir-sdk", names, " ")
      for (k = 1; k <= 3; k++) {
        a = names[k]; w[a] = median(wall[a]); c[a] = median(cpu[a]); m[a] = median(rss[a])
        printf "| %s | %.1f s | %.1f s | %.0f MiB | %s |\n", a, w[a], c[a], m[a] / 1024, units[a]
      }
      printf "| **ratio ours/floor** | **%.3f** | **%.3f** | **%.3f** | |\n",
        w["ours"] / w["floor"], c["ours"] / c["floor"], m["ours"] / m["floor"]
      printf "| **ratio ours/fhir-sdk** | **%.3f** | **%.3f** | **%.3f** | |\n",
        w["ours"] / w["fhir-sdk"], c["ours"] / c["fhir-sdk"], m["ours"] / m["fhir-sdk"]
    }' "$results"
}

# Writes $out with the tables of the profiles measured so far (so an interrupted
# release run still leaves the debug table).
report() {
  {
    echo "# Build cost: a minimal Patient app, ours vs fhir-sdk"
    echo
    echo "Issues 8 and 19, P5. Targets: ours <= 1.25x the floor's CPU and <= 0.3x fhir-sdk's."
    echo "Generated by \`bench/build-cost/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- apps: \`bench/build-cost/ours\` (auth-core + auth-fhir + auth-macros from this tree, default"
    echo "  features: rustls on ring) and \`bench/build-cost/fhir-sdk\` (fhir-sdk 0.16, features r4b,"
    echo "  client, rustls): the same program (client-credentials token, read Patient by id, search"
    echo "  Patients by name); \`bench/build-cost/floor\`: the two API calls alone on reqwest (rustls on"
    echo "  ring, http2, json, query), tokio and serde_json, with a bearer from the environment"
    echo "- each build: \`cargo build\` from an empty target directory, downloads excluded"
    echo "  (\`cargo fetch\` first), \`/usr/bin/time -v\`; rounds: $rounds, interleaved; medians shown"
    echo "- peak RSS: the largest single process of the build (GNU time's maximum resident set size)"
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(rustc --version), CARGO_BUILD_JOBS not set"
    echo "- load average (1, 5, 15 min) before: $load_start; after: $(load)."
    echo "  Wall times grow with the load shown here (other work on the machine);"
    echo "  user+sys CPU and peak RSS are much less affected."
    for profile in $done_profiles; do
      echo
      if [[ "$profile" == dev ]]; then echo "## Debug (\`cargo build\`)"; else echo "## Release (\`cargo build --release\`)"; fi
      echo
      table "$profile"
    done
    echo
    echo "Every run (app, profile, round, wall s, user+sys s, peak RSS KiB, crates compiled):"
    echo
    echo '```text'
    cat "$results"
    echo '```'
  } > "$out"
}

done_profiles=""
for profile in $profiles; do
  for ((r = 1; r <= rounds; r++)); do
    # Interleave, and rotate who goes first, so no app always gets the warmer machine.
    order=()
    for ((k = 0; k < ${#apps[@]}; k++)); do order+=("${apps[(k + r - 1) % ${#apps[@]}]}"); done
    for app in "${order[@]}"; do measure "$app" "$profile" "$r"; done
  done
  done_profiles="$done_profiles $profile"
  report
  echo "== $profile done; tables so far in ${out#"$repo"/}" >&2
done
uptime_end="$(uptime)"

echo
echo "uptime before: $uptime_start"
echo "uptime after:  $uptime_end"
echo
cat "$out"
echo
echo "written to ${out#"$repo"/}"
