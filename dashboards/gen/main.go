// Command gen writes the Grafana dashboards into a directory (default: the
// current one, which is dashboards/ under go generate).
//
//	go generate ./dashboards/
//	go run ./dashboards/gen -dir dashboards
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/authbroker/authbroker_exporter/dashboards/internal/board"
)

func main() {
	dir := flag.String("dir", ".", "directory to write the dashboard JSON files to")
	flag.Parse()
	files, err := board.Files()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(*dir, f.Name), f.JSON, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
