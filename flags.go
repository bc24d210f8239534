package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/authbroker/authbroker_exporter/internal/discover"
	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// config holds every flag. Flags that a container user would set carry an
// environment variable too.
type config struct {
	brokerURL     string
	tokenFile     string
	stream        bool
	brokerTimeout time.Duration
	maxFrame      int64
	maxUsage      int64

	web                    *web.FlagConfig
	metricsPath            string
	maxRequests            int
	disableExporterMetrics bool

	identityMode    string
	identityKeyFile string
	usage           bool
	// usageTimeoutSet: the deprecated --collector.usage.timeout was given.
	usageTimeoutSet bool

	probeInterval       time.Duration
	disabledInterval    time.Duration
	refreshOverdue      bool
	refreshEvery        time.Duration
	disableExpiredAfter time.Duration

	health health.Thresholds

	logLevel    string
	logFormat   string
	plainLogger log.Logger // set by logger()
}

func registerFlags(app *kingpin.Application) *config {
	c := &config{}
	app.Flag("broker.url", "Broker base URL. Default: discovered like the broker's own clients (env, agent config.yml), else "+discover.DefaultURL+".").
		Envar("OMP_AUTH_BROKER_URL").StringVar(&c.brokerURL)
	app.Flag("broker.token-file", "File holding the broker's bearer token, re-read after a 401. Default: $OMP_AUTH_BROKER_TOKEN, the agent config, then $HOME/.omp/auth-broker.token.").
		Envar("AUTHBROKER_TOKEN_FILE").StringVar(&c.tokenFile)
	app.Flag("broker.stream", "Follow the broker's SSE snapshot stream; --no-broker.stream forces long-poll.").
		Default("true").Envar("AUTHBROKER_STREAM").BoolVar(&c.stream)
	app.Flag("broker.timeout", "Timeout of one broker request (long-polls get their wait on top).").
		Default("10s").DurationVar(&c.brokerTimeout)
	app.Flag("broker.max-frame-bytes", "Largest stream frame or response accepted (usage aside); a full snapshot arrives as one frame.").
		Default("16777216").Int64Var(&c.maxFrame)
	app.Flag("broker.max-usage-bytes", "Largest /v1/usage answer accepted (the default fits about 50,000 reports); a larger one is counted as usage_fetch_errors_total{reason=\"too_large\"} and the last good reports are kept.").
		Default("134217728").Int64Var(&c.maxUsage)

	c.web = kingpinflag.AddFlags(app, ":8766")
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&c.metricsPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; more are answered 503 at once. 0 = no limit.").
		Default("40").IntVar(&c.maxRequests)
	app.Flag("web.disable-exporter-metrics", "Exclude metrics about the exporter itself (promhttp_*, process_*, go_*).").
		Default("false").BoolVar(&c.disableExporterMetrics)

	app.Flag("collector.identity", "How identity labels (identity, email, account, org) are shown: raw, hashed (keyed HMAC) or empty.").
		Default(string(identity.Hashed)).Envar("AUTHBROKER_IDENTITY").EnumVar(&c.identityMode, identity.Modes...)
	app.Flag("collector.identity.hash-key-file", "Key for --collector.identity=hashed. Default: derived from the broker token, so hashes are stable until the token changes.").
		Envar("AUTHBROKER_IDENTITY_HASH_KEY_FILE").StringVar(&c.identityKeyFile)
	app.Flag("collector.usage", "Publish usage limits from the broker's /v1/usage.").Default("true").BoolVar(&c.usage)
	// Deprecated: scrapes no longer wait for /v1/usage (the store's
	// refresher fetches it in the background). Accepted, hidden, and
	// logged once, so existing command lines keep working.
	app.Flag("collector.usage.timeout", "Deprecated, no effect: scrapes never wait for /v1/usage.").
		Hidden().IsSetByUser(&c.usageTimeoutSet).Duration()
	app.Flag("collector.disabled.interval", "How often the disabled-credential tombstones are polled.").
		Default("60s").DurationVar(&c.disabledInterval)

	app.Flag("monitor.probe-interval", "How often the broker's /v1/healthz is probed.").Default("15s").DurationVar(&c.probeInterval)
	app.Flag("monitor.refresh-overdue", "Ask the broker to refresh OAuth credentials whose rotation is overdue (off by default).").
		Default("false").BoolVar(&c.refreshOverdue)
	app.Flag("monitor.refresh-overdue.every", "Minimum time between two self-healing calls for one credential.").
		Default("10m").DurationVar(&c.refreshEvery)
	app.Flag("monitor.disable-expired-after", "Disable a credential that stayed expired longer than this (0 = never, the default).").
		Default("0s").DurationVar(&c.disableExpiredAfter)

	def := health.DefaultThresholds()
	app.Flag("health.expiring-within", "A credential this close to expiry is 'expiring' on the status page, the health API and check.").
		Default(def.ExpiringWithin.String()).DurationVar(&c.health.ExpiringWithin)
	app.Flag("health.rotation-grace", "How long past its rotation deadline a credential may go unrotated (0 = the broker's refresher interval).").
		Default("0s").DurationVar(&c.health.RotationGrace)
	app.Flag("health.stale-after", "How long the mirror may be down before the verdict is critical.").
		Default(def.StaleAfter.String()).DurationVar(&c.health.StaleAfter)
	app.Flag("health.usage-warning", "Used fraction of a usage limit from which it warns.").
		Default(strconv.FormatFloat(def.UsageWarning, 'g', -1, 64)).Float64Var(&c.health.UsageWarning)
	app.Flag("health.max-clock-skew", "Broker clock skew that degrades the verdict.").
		Default(def.MaxClockSkew.String()).DurationVar(&c.health.MaxClockSkew)
	app.Flag("health.disabled-recent", "A refresh_failed tombstone younger than this degrades the verdict.").
		Default(def.DisabledRecent.String()).DurationVar(&c.health.DisabledRecent)

	app.Flag("log.level", "Only log messages with the given severity or above: debug, info, warn, error.").
		Default("info").EnumVar(&c.logLevel, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages: logfmt or json.").
		Default("logfmt").EnumVar(&c.logFormat, "logfmt", "json")
	return c
}

func (c *config) thresholds() health.Thresholds { return c.health }

// warnDeprecated logs once for each deprecated flag given.
func (c *config) warnDeprecated(logger log.Logger) {
	if c.usageTimeoutSet {
		level.Warn(logger).Log("msg", "--collector.usage.timeout is deprecated and has no effect: scrapes serve the last usage answer and never wait for /v1/usage; each fetch is bounded by --broker.timeout times (accounts of the largest provider + 1)")
	}
}

// target is where the broker is and how the exporter authenticates.
type target struct {
	URL   string
	token broker.TokenSource
}

func (c *config) client(ctx context.Context, logger log.Logger) (*broker.Client, target, error) {
	d, err := discover.Discover(ctx, discover.Options{URL: c.brokerURL, TokenFile: c.tokenFile})
	if err != nil {
		return nil, target{}, err
	}
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, target{}, fmt.Errorf("bad broker URL %q from %s: want http(s)://host:port", d.URL, d.URLFrom)
	}
	t := target{URL: strings.TrimRight(d.URL, "/")}
	if d.TokenFile != "" {
		if err := checkTokenFile(d.TokenFile, logger); err != nil {
			return nil, target{}, err
		}
		t.token = broker.FileToken(d.TokenFile)
	} else {
		t.token = broker.StaticToken(d.Token)
	}
	level.Info(logger).Log("msg", "broker", "url", t.URL, "url_from", d.URLFrom, "token_from", d.TokenFrom)
	cl, err := broker.NewClient(broker.ClientOptions{
		URL:            t.URL,
		Token:          t.token,
		RequestTimeout: c.brokerTimeout,
		MaxFrameBytes:  int(c.maxFrame),
		MaxUsageBytes:  int(c.maxUsage),
	})
	if err != nil {
		return nil, target{}, err
	}
	return cl, t, nil
}

// checkTokenFile fails early on a missing file and warns when the token is
// readable by anyone but its owner.
func checkTokenFile(path string, logger log.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("broker token file: %w", err)
	}
	// Group access is normal where a group is the point (a Kubernetes
	// Secret mounted for fsGroup); access for others is not.
	if fi.Mode().Perm()&0o007 != 0 {
		level.Warn(logger).Log("msg", "broker token file is readable by others; chmod o-rwx it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return nil
}

func (c *config) redactor(t target) (*identity.Redactor, error) {
	mode := identity.Mode(c.identityMode)
	if mode != identity.Hashed {
		return identity.New(mode, nil)
	}
	if c.identityKeyFile != "" {
		key, err := os.ReadFile(c.identityKeyFile)
		if err != nil {
			return nil, fmt.Errorf("identity hash key: %w", err)
		}
		return identity.New(mode, []byte(strings.TrimSpace(string(key))))
	}
	tok, err := t.token.Token()
	if err != nil {
		return nil, fmt.Errorf("identity hash key from broker token: %w", err)
	}
	// A one-way derivation: the label hashes reveal nothing of the token.
	m := hmac.New(sha256.New, []byte(tok))
	m.Write([]byte("authbroker_exporter identity labels"))
	return identity.New(mode, m.Sum(nil))
}
