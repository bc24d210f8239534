// Command authbroker_exporter is a Prometheus exporter and health monitor
// for the oh-my-pi auth-broker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdslog "log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/authbroker/authbroker_exporter/collector"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
)

const program = "authbroker_exporter"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New(program, "Prometheus exporter and health monitor for the oh-my-pi auth-broker.")
	app.Version(version.Print(program))
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	cfg := registerFlags(app)
	serve := app.Command("serve", "Run the exporter (default).").Default()
	check := registerCheck(app)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	}
	logger, err := cfg.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	}
	cfg.warnDeprecated(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case serve.FullCommand():
		if err := serveExporter(ctx, cfg, logger); err != nil {
			level.Error(logger).Log("msg", "exiting", "err", err)
			return 1
		}
		return 0
	case check.cmd.FullCommand():
		return check.run(ctx, cfg, stdout, logger)
	}
	return 2
}

// exporter is the running pieces behind the HTTP handler.
type exporter struct {
	store   *store.Store
	handler http.Handler
	stop    func()
}

func newExporter(ctx context.Context, cfg *config, logger log.Logger) (*exporter, error) {
	client, target, err := cfg.client(ctx, logger)
	if err != nil {
		return nil, err
	}
	redactor, err := cfg.redactor(target)
	if err != nil {
		return nil, err
	}
	opts := store.Options{
		Broker: client,
		Stream: cfg.stream,
		Logger: log.With(logger, "component", "store"),
	}
	if !cfg.usage {
		opts.UsageTTL = -1 // no usage refresher
	}
	st := store.New(opts)
	mon := monitor.New(monitor.Options{
		Broker:              client,
		Mirror:              st,
		Logger:              log.With(logger, "component", "monitor"),
		ProbeInterval:       cfg.probeInterval,
		DisabledInterval:    cfg.disabledInterval,
		RefreshOverdue:      cfg.refreshOverdue,
		RefreshEvery:        cfg.refreshEvery,
		RotationGrace:       cfg.health.RotationGrace,
		DisableExpiredAfter: cfg.disableExpiredAfter,
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector(program))
	// The exporter's own metrics, as node_exporter's: the Go runtime, the
	// process and the /metrics handler's promhttp_* counters.
	var self prometheus.Registerer
	if !cfg.disableExporterMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		self = reg
	}
	cs := collector.New(collector.Options{
		Source:         st,
		Broker:         mon,
		Identity:       redactor,
		Usage:          cfg.usage,
		StreamDisabled: !cfg.stream,
		Thresholds:     cfg.thresholds(),
		Logger:         log.With(logger, "component", "collector"),
	})
	if err := cs.Register(reg); err != nil {
		st.Close()
		return nil, err
	}
	metrics := cs.Handler(reg, collector.HandlerOpts{
		Logger: log.With(logger, "component", "http"),
		// Concurrent gzip scrapes share one render; the cap still stops a
		// scrape storm from queueing unbounded work (excess scrapes get 503).
		MaxRequestsInFlight: cfg.maxRequests,
		Instrument:          self,
	})
	handler := cfg.routes(metrics, healthSource(cfg, st, mon, target.URL), redactor)
	monCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); mon.Run(monCtx) }()
	return &exporter{store: st, handler: handler, stop: func() {
		cancel()
		<-done
		st.Close()
		client.CloseIdleConnections()
	}}, nil
}

func serveExporter(ctx context.Context, cfg *config, logger log.Logger) error {
	level.Info(logger).Log("msg", "starting "+program, "version", version.Info(), "build", version.BuildContext())
	e, err := newExporter(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer e.stop()
	sl := cfg.slogger()
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: stdslog.NewLogLogger(sl.Handler(), stdslog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(srv, cfg.web, sl) }()
	select {
	case err := <-serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("listen on %s: %w", strings.Join(*cfg.web.WebListenAddresses, ","), err)
	case <-ctx.Done():
	}
	level.Info(logger).Log("msg", "shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
