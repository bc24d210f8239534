package main

import (
	_ "embed"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/common/version"
)

// releaseVersion is the repository's VERSION, compiled in: every build
// reports it, whatever the toolchain could stamp (a -buildvcs=false build
// or one from a source tarball has no VCS information; a stamped build of
// an untagged commit has a pseudo-version, not the release's number).
//
//go:embed VERSION
var releaseVersion string

// The release build (scripts/build.sh) sets prometheus/common/version's
// variables with -ldflags. Any other build gets the version from VERSION,
// and the commit and its time from the toolchain's build information when
// it has them.
func init() { fillVersion(debug.ReadBuildInfo()) }

// buildStamp is what the toolchain's build information says about a binary.
type buildStamp struct {
	Revision string // commit, "-modified" appended for a dirty tree; "unknown" when not recorded
	Date     string // commit time in scripts/build.sh's format; "" when not recorded
}

// pseudoRevision is the commit hash at the end of a Go pseudo-version
// (v0.0.0-20261130181500-0123456789ab, optionally +dirty).
var pseudoRevision = regexp.MustCompile(`[-.]\d{14}-([0-9a-f]{12})(?:\+dirty)?$`)

// stampFromBuildInfo reads a binary's build information: the settings
// vcs.revision, vcs.modified and vcs.time (which `go build` records in a
// checkout unless -buildvcs=false). Without vcs.revision, a
// pseudo-version's commit is used (`go install module@commit`).
func stampFromBuildInfo(bi *debug.BuildInfo, ok bool) buildStamp {
	s := buildStamp{Revision: "unknown"}
	if !ok || bi == nil {
		return s
	}
	var rev, modified, at string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			modified = kv.Value
		case "vcs.time":
			at = kv.Value
		}
	}
	switch {
	case rev != "":
		s.Revision = rev
		if modified == "true" {
			s.Revision += "-modified" // prometheus/common/version's spelling
		}
	default:
		if m := pseudoRevision.FindStringSubmatch(bi.Main.Version); m != nil {
			s.Revision = m[1]
		}
	}
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		s.Date = t.UTC().Format("20060102-15:04:05")
	}
	return s
}

// fillVersion sets the version variables the -ldflags left empty.
func fillVersion(bi *debug.BuildInfo, ok bool) {
	s := stampFromBuildInfo(bi, ok)
	if version.Version == "" {
		version.Version = strings.TrimSpace(releaseVersion)
	}
	if version.Revision == "" {
		version.Revision = s.Revision
	}
	if version.BuildDate == "" {
		version.BuildDate = s.Date
	}
}

// exporterVersion is the version the status page and /api/v1/health show:
// the version, and the commit unless the version already names it.
func exporterVersion() string { return formatExporterVersion(version.Version, version.GetRevision()) }

func formatExporterVersion(v, rev string) string {
	if rev == "" || rev == "unknown" {
		return v
	}
	short, suffix := rev, ""
	if base, ok := strings.CutSuffix(rev, "-modified"); ok {
		short, suffix = base, "-modified"
	}
	if len(short) > 12 {
		short = short[:12]
	}
	if strings.Contains(v, short) {
		return v
	}
	return v + " (" + short + suffix + ")"
}
