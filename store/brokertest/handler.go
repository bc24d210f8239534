package brokertest

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	refreshRoute = regexp.MustCompile(`^/v1/credential/(\d+)/refresh$`)
	disableRoute = regexp.MustCompile(`^/v1/credential/(\d+)/disable$`)
	blockRoute   = regexp.MustCompile(`^/v1/credential/(\d+)/block$`)
	blocksRoute  = regexp.MustCompile(`^/v1/credential/(\d+)/blocks$`)
)

const maxBody = 16 << 20

func writeJSON(w http.ResponseWriter, status int, body any, headers ...string) {
	data := mustJSON(body)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, object{{"error", msg}})
}

// authorized mirrors /^Bearer\s+(.+)$/i followed by a trimmed exact match.
func authorized(r *http.Request, token string) bool {
	header := strings.Join(r.Header.Values("Authorization"), ", ")
	if len(header) < len("Bearer") || !strings.EqualFold(header[:len("Bearer")], "Bearer") {
		return false
	}
	rest := header[len("Bearer"):]
	first, size := utf8.DecodeRuneInString(rest)
	if size == 0 || !unicode.IsSpace(first) || utf8.RuneCountInString(rest) < 2 {
		return false
	}
	if strings.ContainsAny(rest, "\r\n\u2028\u2029") {
		return false
	}
	got := strings.TrimSpace(rest)
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (b *Broker) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if r.Method == http.MethodGet && path == "/v1/healthz" {
		b.count(path)
		if !b.applyFault(w, r, path) {
			return
		}
		writeJSON(w, http.StatusOK, object{{"ok", true}, {"version", b.version}})
		return
	}
	b.mu.Lock()
	token := b.token
	b.mu.Unlock()
	if !authorized(r, token) {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	b.count(path)
	if !b.applyFault(w, r, path) {
		return
	}
	b.route(w, r, path)
}

func (b *Broker) count(path string) {
	b.mu.Lock()
	b.requests[path]++
	b.mu.Unlock()
}

// applyFault runs the first matching fault; false when the request has
// been answered (or dropped) by it.
func (b *Broker) applyFault(w http.ResponseWriter, r *http.Request, path string) bool {
	b.mu.Lock()
	var f *faultState
	for _, x := range b.faults {
		if (x.Path == "" || x.Path == path) && x.left != 0 {
			f = x
			break
		}
	}
	if f == nil {
		b.mu.Unlock()
		return true
	}
	if f.left > 0 {
		f.left--
	}
	fault, released := f.Fault, b.faultsGen
	b.mu.Unlock()

	if fault.Delay > 0 {
		t := time.NewTimer(fault.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		case <-b.done:
			return false
		}
	}
	if fault.Stall {
		select {
		case <-released:
			return true // ClearFaults: answer normally
		case <-r.Context().Done():
			return false
		case <-b.done:
			return false
		}
	}
	if fault.Status != 0 {
		writeError(w, fault.Status, fault.Message)
		return false
	}
	return true
}

func noRoute(w http.ResponseWriter, r *http.Request, path string) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("No route: %s %s", r.Method, path))
}

func routeID(re *regexp.Regexp, path string) (string, bool) {
	m := re.FindStringSubmatch(path)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// parseID is parseInt on a digits-only segment; the string form is what
// the broker prints in "No credential with id=<id>".
func parseID(digits string) (int64, string) {
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		trimmed := strings.TrimLeft(digits, "0")
		return -1, trimmed
	}
	return id, strconv.FormatInt(id, 10)
}

func (b *Broker) route(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case r.Method == http.MethodGet && path == "/v1/snapshot/stream":
		b.mu.Lock()
		ok := b.streamOK
		b.mu.Unlock()
		if !ok {
			noRoute(w, r, path)
			return
		}
		b.serveStream(w, r)
	case r.Method == http.MethodGet && path == "/v1/snapshot":
		b.serveSnapshot(w, r)
	case r.Method == http.MethodGet && path == "/v1/usage":
		b.mu.Lock()
		reports := b.usage
		b.mu.Unlock()
		if reports == nil {
			reports = []byte("[]")
		}
		// What writeJSON would send, without re-encoding the reports or
		// copying them (megabytes at 10k) into one body.
		head := strconv.AppendInt([]byte(`{"generatedAt":`), ms(b.now()), 10)
		head = append(head, `,"reports":`...)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(reports)+1))
		_, _ = w.Write(head)
		_, _ = w.Write(reports)
		_, _ = w.Write([]byte{'}'})
	case r.Method == http.MethodGet && path == "/v1/credentials/disabled":
		b.serveDisabled(w, r)
	case r.Method == http.MethodPost && path == "/v1/credential":
		b.serveUpload(w, r)
	case r.Method == http.MethodPost && refreshRoute.MatchString(path):
		digits, _ := routeID(refreshRoute, path)
		b.serveRefresh(w, digits)
	case r.Method == http.MethodPost && disableRoute.MatchString(path):
		digits, _ := routeID(disableRoute, path)
		b.serveDisable(w, r, digits)
	case r.Method == http.MethodPost && blockRoute.MatchString(path):
		digits, _ := routeID(blockRoute, path)
		b.serveBlock(w, r, digits)
	case r.Method == http.MethodDelete && blocksRoute.MatchString(path):
		digits, _ := routeID(blocksRoute, path)
		b.serveDeleteBlocks(w, digits)
	default:
		noRoute(w, r, path)
	}
}

func meterScopes(r *http.Request) bool {
	for _, v := range strings.Split(strings.Join(r.Header.Values(capabilitiesHeader), ", "), ",") {
		if strings.TrimSpace(v) == codexMeterBlockScopes {
			return true
		}
	}
	return false
}

func snapshotHeaders(gen int64) []string {
	return []string{"ETag", fmt.Sprintf("%q", strconv.FormatInt(gen, 10)), "Cache-Control", "no-store", "Vary", capabilitiesHeader}
}

// serveSnapshot is GET /v1/snapshot with the long-poll rules of docs/broker-protocol.md §5.
func (b *Broker) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	caps := meterScopes(r)
	tag, hasTag := parseGenerationTag(strings.Join(r.Header.Values("If-None-Match"), ", "))
	q := r.URL.Query()
	wait := parseWaitMs(q.Get("wait"), q.Has("wait"))

	b.mu.Lock()
	epoch := b.epoch
	if !hasTag || b.generation != tag || wait <= 0 {
		s := b.buildLocked(caps)
		b.mu.Unlock()
		writeJSON(w, http.StatusOK, s.response(false), snapshotHeaders(s.generation)...)
		return
	}
	changed := b.changed
	b.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			b.mu.Lock()
			if b.epoch != epoch {
				b.mu.Unlock()
				panic(http.ErrAbortHandler)
			}
			gen := b.generation
			var s *snapshot
			if gen != tag {
				s = b.buildLocked(caps)
			}
			b.mu.Unlock()
			if s != nil {
				writeJSON(w, http.StatusOK, s.response(false), snapshotHeaders(s.generation)...)
				return
			}
			h := w.Header()
			for i, hs := 0, snapshotHeaders(gen); i < len(hs); i += 2 {
				h.Set(hs[i], hs[i+1])
			}
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return // the broker logs a 499 nobody sees
		case <-b.done:
			panic(http.ErrAbortHandler)
		}
		b.mu.Lock()
		if b.epoch != epoch {
			b.mu.Unlock()
			panic(http.ErrAbortHandler) // restarted: the old process never answers
		}
		if b.generation != tag {
			s := b.buildLocked(caps)
			b.mu.Unlock()
			writeJSON(w, http.StatusOK, s.response(false), snapshotHeaders(s.generation)...)
			return
		}
		changed = b.changed
		b.mu.Unlock()
	}
}

func (b *Broker) serveDisabled(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	provider, filter := q.Get("provider"), q.Has("provider") && q.Get("provider") != ""
	b.mu.Lock()
	ids := make([]int64, 0, len(b.rows))
	for id, x := range b.rows {
		if x.disabled && (!filter || x.provider == provider) {
			ids = append(ids, id)
		}
	}
	sortIDs(ids)
	out := make([]object, 0, len(ids))
	for _, id := range ids {
		x := b.rows[id]
		o := object{{"id", x.id}, {"provider", x.provider}, {"type", x.typ()}, {"cause", x.cause}}
		if !x.apiKey {
			for _, f := range []struct{ k, v string }{
				{"email", x.oauth.Email}, {"accountId", x.oauth.AccountID}, {"orgId", x.oauth.OrgID}, {"orgName", x.oauth.OrgName},
			} {
				if f.v != "" {
					o = append(o, field{f.k, f.v})
				}
			}
		}
		o = append(o, field{"disabledAtMs", x.disabledAt.UnixMilli()})
		out = append(out, o)
	}
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"generatedAt", ms(b.now())}, {"disabled", out}})
}

func sortIDs(ids []int64) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

func readBody(r *http.Request) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	return string(data), err
}

func (b *Broker) serveUpload(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request body: "+err.Error())
		return
	}
	in, msg := parseUpload(body)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	b.mu.Lock()
	entries := b.upsertLocked(in)
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"entries", entries}})
}

// upsertLocked is upsertAuthCredentialForProvider plus the in-memory
// update of AuthStorage.upsertCredential.
func (b *Broker) upsertLocked(in *row) []object {
	provider := in.provider
	existing := append([]*row(nil), b.active[provider]...)
	changed := false
	if !in.apiKey {
		for _, x := range existing {
			if x.apiKey && b.disableLocked(x.id, replacedByOAuthCause) {
				changed = true
			}
		}
	}
	var target *row
	inKey, inHasKey := in.identity()
	for _, x := range existing {
		if x.disabled || x.apiKey != in.apiKey {
			continue
		}
		match := false
		if in.apiKey {
			match = x.key == in.key
		} else if k, ok := x.identity(); ok && inHasKey && k == inKey {
			match = true
		}
		if !match {
			continue
		}
		if target == nil {
			target = x
			continue
		}
		if b.disableLocked(x.id, replacedByNewerCause) {
			changed = true
		}
	}
	if target == nil {
		in.oauth = copyOAuth(in.oauth)
		b.insertLocked(in)
		changed = true
	} else if !sameCredential(target, in) {
		// AuthStorage keeps its in-memory row when the credential compares
		// equal (authCredentialEquals), so only a real change lands.
		target.key, target.source, target.oauth = in.key, in.source, copyOAuth(in.oauth)
		changed = true
	}
	b.purgeTombstonesLocked(provider)
	if changed {
		b.bumpLocked()
	}
	out := []object{}
	for _, x := range b.active[provider] {
		out = append(out, x.credentialEntry())
	}
	return out
}

// purgeTombstonesLocked hard-deletes tombstones an active row supersedes:
// every api_key tombstone once the provider has an active key, and OAuth
// tombstones whose identity an active row holds.
func (b *Broker) purgeTombstonesLocked(provider string) {
	hasKey := false
	identities := map[string]bool{}
	for _, x := range b.active[provider] {
		if x.apiKey {
			hasKey = true
		} else if k, ok := x.identity(); ok {
			identities[k] = true
		}
	}
	for id, x := range b.rows {
		if !x.disabled || x.provider != provider {
			continue
		}
		if x.apiKey && hasKey {
			delete(b.rows, id)
			continue
		}
		if k, ok := x.identity(); ok && identities[k] {
			delete(b.rows, id)
		}
	}
}

// serveRefresh is POST /v1/credential/:id/refresh: +1 generation at the
// start, +1 on failure; success rewrites the row (+1) with a new access
// token and expiry.
func (b *Broker) serveRefresh(w http.ResponseWriter, digits string) {
	id, shown := parseID(digits)
	b.mu.Lock()
	b.bumpLocked()
	fail := func(status int, msg string) {
		b.bumpLocked()
		b.mu.Unlock()
		writeError(w, status, msg)
	}
	r, ok := b.activeRowLocked(id)
	if !ok {
		fail(http.StatusNotFound, "No credential with id="+shown)
		return
	}
	if r.apiKey {
		fail(http.StatusInternalServerError, fmt.Sprintf("Credential %d is not OAuth (provider=%s, type=api_key)", id, r.provider))
		return
	}
	if e, bad := b.refreshErrs[id]; bad {
		if isDefinitiveOAuthFailure("Error: " + e.message) {
			b.disableLocked(id, "oauth refresh failed: Error: "+e.message)
			b.bumpLocked()
		}
		fail(e.status, e.message)
		return
	}
	b.refreshes[id]++
	n := b.refreshes[id]
	c := r.oauth
	c.Access = fmt.Sprintf("brokertest-access-%d-%d", id, n)
	c.Refresh = fmt.Sprintf("brokertest-refresh-%d-%d", id, n)
	c.Expires = b.now().Add(time.Hour).Truncate(time.Millisecond)
	var extra map[string]any
	for k, v := range c.Extra {
		if rebuiltExtraKeys[k] {
			if extra == nil {
				extra = map[string]any{}
			}
			extra[k] = v
		}
	}
	c.Extra = extra
	r.oauth = c
	b.bumpLocked()
	entry := r.credentialEntry()
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"entry", entry}})
}

func (b *Broker) serveDisable(w http.ResponseWriter, r *http.Request, digits string) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request body: "+err.Error())
		return
	}
	cause, msg := parseDisable(body)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if cause == "" {
		cause = defaultDisableCause
	}
	id, shown := parseID(digits)
	b.mu.Lock()
	ok := b.disableLocked(id, cause)
	if ok {
		b.bumpLocked()
	}
	b.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "No credential with id="+shown)
		return
	}
	writeJSON(w, http.StatusOK, object{{"ok", true}})
}

func (b *Broker) serveBlock(w http.ResponseWriter, r *http.Request, digits string) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request body: "+err.Error())
		return
	}
	req, msg := parseBlock(body)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	id, shown := parseID(digits)
	b.mu.Lock()
	if _, ok := b.activeRowLocked(id); !ok {
		b.mu.Unlock()
		writeError(w, http.StatusNotFound, "No credential with id="+shown)
		return
	}
	scopes := []string{req.scope}
	if req.providerKey == codexBlockKey && req.scope == "shared" {
		scopes = []string{"chat", "spark"}
	}
	now := b.now().Truncate(time.Second).UnixMilli()
	for _, scope := range scopes {
		found := false
		for i := range b.blocks[id] {
			x := &b.blocks[id][i]
			if x.providerKey == req.providerKey && x.scope == scope {
				x.blockedUntil = max(x.blockedUntil, req.blockedUntil)
				x.updatedAt = now
				found = true
			}
		}
		if !found {
			b.blocks[id] = append(b.blocks[id], blockRec{providerKey: req.providerKey, scope: scope, blockedUntil: req.blockedUntil, updatedAt: now})
		}
	}
	b.bumpLocked()
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"ok", true}})
}

func (b *Broker) serveDeleteBlocks(w http.ResponseWriter, digits string) {
	id, shown := parseID(digits)
	b.mu.Lock()
	if _, ok := b.activeRowLocked(id); !ok {
		b.mu.Unlock()
		writeError(w, http.StatusNotFound, "No credential with id="+shown)
		return
	}
	delete(b.blocks, id)
	b.bumpLocked()
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"ok", true}})
}
