package main

import (
	"context"
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"

	"github.com/authbroker/authbroker_exporter/internal/checkcmd"
)

type checkCmd struct {
	cmd      *kingpin.CmdClause
	format   string
	provider string
}

func registerCheck(app *kingpin.Application) *checkCmd {
	c := &checkCmd{cmd: app.Command("check", "Connect to the broker once, evaluate its health, print a summary and exit 0 ok, 1 warning, 2 critical, 3 unknown.")}
	c.cmd.Flag("format", "Output format: text or json.").Default("text").EnumVar(&c.format, "text", "json")
	c.cmd.Flag("provider", "Check one provider's capacity instead: exit 2 when none of its credentials is usable, 1 when at most one or under a quarter of them is, 0 otherwise.").
		PlaceHolder("NAME").StringVar(&c.provider)
	return c
}

// run is the check subcommand. Configuration problems are "unknown" (3):
// the check could not tell anything about the broker.
func (c *checkCmd) run(ctx context.Context, cfg *config, stdout io.Writer, logger log.Logger) int {
	client, target, err := cfg.client(ctx, logger)
	if err != nil {
		fmt.Fprintf(stdout, "UNKNOWN: %v\n", err)
		return checkcmd.ExitUnknown
	}
	redactor, err := cfg.redactor(target)
	if err != nil {
		fmt.Fprintf(stdout, "UNKNOWN: %v\n", err)
		return checkcmd.ExitUnknown
	}
	return checkcmd.Check(ctx, checkcmd.Options{
		Client:     client,
		BrokerURL:  target.URL,
		Thresholds: cfg.thresholds(),
		Redactor:   redactor,
		Format:     c.format,
		Provider:   c.provider,
		Version:    exporterVersion(),
	}, stdout)
}
