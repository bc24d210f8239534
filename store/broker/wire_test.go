package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// liveSnapshot is the live example of docs/broker-protocol.md §4.5, with canary tokens and an
// MCP-style extension field.
const liveSnapshot = `{"generation":14,"generatedAt":1795751638608,"serverNowMs":1795751638608,
 "refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":1380},
 "credentials":[
  {"id":1,"provider":"openai","credential":{"type":"api_key","key":"` + canaryKey + `"},"identityKey":null,"rotatesInMs":null},
  {"id":2,"provider":"anthropic","credential":{"type":"oauth","access":"` + canaryAccess + `","refresh":"__remote__",
   "expires":1795755013000,"accountId":"acct-A","email":"a@example.com","clientSecret":"` + canaryExtra + `"},"identityKey":"email:a@example.com","rotatesInMs":3121380,
   "blocks":[{"providerKey":"anthropic:oauth","blockScope":"","blockedUntilMs":1795751700000,"updatedAtMs":1795751638000}]},
  {"id":3,"provider":"openai-codex","credential":{"type":"oauth","access":"acc-2","refresh":"__remote__",
   "expires":1795751533000,"accountId":"acct-B","email":"b@example.com"},"identityKey":"email:b@example.com","rotatesInMs":1380}],
 "futureTopLevelKey":{"nested":[1,2,3]}}`

func TestDecodeSnapshotLiveExample(t *testing.T) {
	recv := epoch.Add(5 * time.Millisecond)
	s, err := decodeSnapshot("GET /v1/snapshot", []byte(liveSnapshot), recv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Generation != 14 || !s.GeneratedAt.Equal(time.UnixMilli(1795751638608)) || !s.ServerNow.Equal(epoch) {
		t.Fatalf("header: %+v", s)
	}
	if !s.Refresher.Enabled || s.Refresher.Interval != time.Minute || s.Refresher.Skew != 5*time.Minute ||
		!s.Refresher.NextSweep.Equal(recv.Add(1380*time.Millisecond)) {
		t.Fatalf("refresher: %+v", s.Refresher)
	}
	if len(s.Entries) != 3 {
		t.Fatalf("entries: %d", len(s.Entries))
	}
	key, oauth := s.Entries[0], s.Entries[1]
	if key.ID != 1 || key.Provider != "openai" || key.Credential.Type != TypeAPIKey || key.HasRotatesIn ||
		key.IdentityKey != "" || key.Credential.HasExpires || key.Credential.fingerprint == 0 {
		t.Fatalf("api key entry: %+v", key)
	}
	if oauth.Credential.Type != TypeOAuth || oauth.Credential.Email != "a@example.com" || oauth.Credential.AccountID != "acct-A" ||
		!oauth.Credential.HasExpires || !oauth.Credential.Expires.Equal(time.UnixMilli(1795755013000)) ||
		oauth.IdentityKey != "email:a@example.com" || !oauth.HasRotatesIn || oauth.RotatesIn != 3121380*time.Millisecond ||
		!oauth.ReceivedAt.Equal(recv) {
		t.Fatalf("oauth entry: %+v", oauth)
	}
	if d, ok := oauth.RotationDeadline(); !ok || !d.Equal(recv.Add(3121380*time.Millisecond)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if len(oauth.Blocks) != 1 || oauth.Blocks[0].ProviderKey != "anthropic:oauth" || oauth.Blocks[0].Scope != "" ||
		!oauth.Blocks[0].BlockedUntil.Equal(time.UnixMilli(1795751700000)) || !oauth.Blocks[0].UpdatedAt.Equal(time.UnixMilli(1795751638000)) {
		t.Fatalf("blocks: %+v", oauth.Blocks)
	}
	if oauth.Credential.fingerprint == s.Entries[2].Credential.fingerprint {
		t.Fatal("different tokens share a fingerprint")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoCanary(t, "decoded snapshot "+verb, fmt.Sprintf(verb, s))
		for _, e := range s.Entries {
			assertNoCanary(t, "decoded entry "+verb, fmt.Sprintf(verb, *e))
		}
	}
}

func TestDecodeNumbers(t *testing.T) {
	never := time.UnixMilli(8640000000000000)
	cases := []struct {
		name    string
		expires string
		want    time.Time
	}{
		{"integer", "1795755013000", time.UnixMilli(1795755013000)},
		{"never-expiring integer", "8640000000000000", never},
		{"never-expiring float", "8.64e15", never},
		{"fractional", "1795755013000.5", time.UnixMilli(1795755013000).Add(500 * time.Microsecond)},
		{"past", "1000", time.UnixMilli(1000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"entry":{"id":7,"provider":"p","credential":{"type":"oauth","access":"x","refresh":"__remote__","expires":` +
				tc.expires + `},"identityKey":null}}`
			e, err := decodeEntryAnswer("test", []byte(body), epoch)
			if err != nil {
				t.Fatal(err)
			}
			if !e.Credential.HasExpires || !e.Credential.Expires.Equal(tc.want) {
				t.Fatalf("expires = %v, want %v", e.Credential.Expires, tc.want)
			}
		})
	}
	t.Run("generation and rotatesInMs as floats", func(t *testing.T) {
		body := `{"kind":"entry","generation":2.1e1,"serverNowMs":1.795751638608e12,"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":9007199254740991},
			"entry":{"id":3.0,"provider":"p","credential":{"type":"oauth","access":"x","expires":1e13},"identityKey":null,"rotatesInMs":1500.0}}`
		f, err := decodeFrame([]byte(body), epoch)
		if err != nil {
			t.Fatal(err)
		}
		if f.Generation != 21 || f.Entry.ID != 3 || f.Entry.RotatesIn != 1500*time.Millisecond || !f.ServerNow.Equal(epoch) {
			t.Fatalf("%+v %+v", f, f.Entry)
		}
		if f.Refresher.Enabled || !f.Refresher.NextSweep.IsZero() {
			t.Fatalf("disabled refresher must have no next sweep: %+v", f.Refresher)
		}
	})
}

func TestDecodeRejectsMissingRequiredFields(t *testing.T) {
	refresher := `"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":10}`
	cred := `{"type":"oauth","access":"` + canaryAccess + `","expires":1}`
	entry := `{"id":4,"provider":"p","credential":` + cred + `,"identityKey":null,"rotatesInMs":null}`
	cases := []struct{ name, frame, want string }{
		{"no kind", `{"generation":1,"serverNowMs":1,` + refresher + `,"entry":` + entry + `}`, "kind"},
		{"unknown kind", `{"kind":"bogus","generation":1}`, "unknown frame kind"},
		{"snapshot without credentials", `{"kind":"snapshot","generation":1,"generatedAt":1,"serverNowMs":1,` + refresher + `}`, "credentials"},
		{"snapshot without generatedAt", `{"kind":"snapshot","generation":1,"serverNowMs":1,` + refresher + `,"credentials":[]}`, "generatedAt"},
		{"entry without generation", `{"kind":"entry","serverNowMs":1,` + refresher + `,"entry":` + entry + `}`, "generation"},
		{"entry without serverNowMs", `{"kind":"entry","generation":1,` + refresher + `,"entry":` + entry + `}`, "serverNowMs"},
		{"entry without refresher", `{"kind":"entry","generation":1,"serverNowMs":1,"entry":` + entry + `}`, "refresher"},
		{"refresher missing interval", `{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":true,"skewMs":1,"nextSweepInMs":1},"entry":` + entry + `}`, "refresher"},
		{"entry without entry", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `}`, "entry"},
		{"removed without id", `{"kind":"removed","generation":1,"serverNowMs":1,` + refresher + `}`, "id: missing"},
		{"entry without id", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"provider":"p","credential":` + cred + `}}`, "entry.id: missing"},
		{"entry without provider", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"credential":` + cred + `}}`, "provider"},
		{"entry without credential", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p"}}`, "credential"},
		{"oauth without access", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":{"type":"oauth","expires":1}}}`, "access"},
		{"oauth without expires", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":{"type":"oauth","access":"` + canaryAccess + `"}}}`, "expires"},
		{"api key without key", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":{"type":"api_key"}}}`, "key"},
		{"access not a string", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":{"type":"oauth","access":123,"expires":1}}}`, "access"},
		{"unknown credential type", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":{"type":"jwt","access":"x"}}}`, "unknown credential type"},
		{"block without providerKey", `{"kind":"entry","generation":1,"serverNowMs":1,` + refresher + `,"entry":{"id":1,"provider":"p","credential":` + cred + `,"blocks":[{"blockScope":"","blockedUntilMs":5}]}}`, "providerKey"},
		{"generation is a string", `{"kind":"entry","generation":"x","serverNowMs":1,` + refresher + `,"entry":` + entry + `}`, "generation: want a number, got a string"},
		{"malformed JSON after a secret", `{"kind":"entry","entry":{"credential":{"access":"` + canaryAccess + `"`, "truncated JSON"},
		{"garbage", `not json ` + canaryAccess, "malformed JSON"},
		{"wrong type deep", `{"kind":"snapshot","generation":1,"generatedAt":1,"serverNowMs":1,` + refresher + `,"credentials":{"a":"` + canaryAccess + `"}}`, "credentials: want an array, got an object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeFrame([]byte(tc.frame), epoch)
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("want ProtocolError, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			assertNoCanary(t, "protocol error", err.Error())
			assertNoCanary(t, "protocol error %#v", fmt.Sprintf("%#v", err))
		})
	}
}

// TestDecodeStrictRejections: each of what JSON.stringify never writes is
// a ProtocolError naming the field path, and never quotes a value.
func TestDecodeStrictRejections(t *testing.T) {
	head := `{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":0},"entry":`
	cred := `"type":"oauth","access":"` + canaryAccess + `","expires":1`
	cases := []struct{ name, entry, want string }{
		{"duplicate key", `{"id":1,"provider":"p","credential":{` + cred + `,"email":"a","email":"` + canaryExtra + `"}}`, "entry.credential.email: duplicate key"},
		{"duplicate key by escape", `{"id":1,"provider":"p","credential":{` + cred + `,"email":"a","em\u0061il":"` + canaryExtra + `"}}`, "entry.credential.email: duplicate key"},
		{"case variant", `{"id":1,"provider":"p","credential":{` + cred + `,"Email":"` + canaryExtra + `"}}`, `entry.credential.Email: key differs only in case from "email"`},
		{"case variant of the token", `{"id":1,"provider":"p","credential":{` + cred + `,"ACCESS":"` + canaryAccess + `"}}`, `entry.credential.ACCESS: key differs only in case`},
		{"quoted number", `{"id":1,"provider":"p","credential":{"type":"oauth","access":"x","expires":"17"}}`, "entry.credential.expires: want a number, got a string"},
		{"wrong type", `{"id":1,"provider":"p","credential":{` + cred + `,"email":7}}`, "entry.credential.email: want a string, got a number"},
		{"missing field", `{"id":1,"credential":{` + cred + `}}`, "entry.provider: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeFrame([]byte(head+tc.entry+`}`), epoch)
			checkProtoErr(t, err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			assertNoCanary(t, "protocol error", err.Error())
		})
	}
}

// TestDecodeLoneSurrogate: JSON.stringify writes a lone surrogate as an
// escape, which decodes to U+FFFD as JSON.parse's round trip would.
func TestDecodeLoneSurrogate(t *testing.T) {
	body := `{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":0},
		"entry":{"id":1,"provider":"p","credential":{"type":"oauth","access":"x","expires":1,"orgName":"Acme \udc00 \ud83d","email":"a@b"}}}`
	f, err := decodeFrame([]byte(body), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Entry.Credential.OrgName; got != "Acme \uFFFD \uFFFD" {
		t.Fatalf("orgName = %q", got)
	}
	u, err := decodeUsage("u", []byte(`{"reports":[{"provider":"p","metadata":{"email":" \udc00x "}}]}`))
	if err != nil || u.Reports[0].Metadata.Email != "\uFFFDx" {
		t.Fatalf("usage %v %+v", err, u)
	}
}

func TestDecodeEscapedStrings(t *testing.T) {
	body := `{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":0},
		"entry":{"id":1,"provider":"p","credential":{"type":"oauth","access":"x\"y","expires":1,"email":"a\u00e9\"b@example.com","orgName":"Ac\\me"}}}`
	f, err := decodeFrame([]byte(body), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if f.Entry.Credential.Email != `aé"b@example.com` || f.Entry.Credential.OrgName != `Ac\me` {
		t.Fatalf("%q %q", f.Entry.Credential.Email, f.Entry.Credential.OrgName)
	}
}

func TestFingerprintTracksTokenMaterial(t *testing.T) {
	mk := func(access string) uint64 {
		body := `{"kind":"entry","generation":1,"serverNowMs":1,"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":0},
			"entry":{"id":1,"provider":"p","credential":{"type":"oauth","access":"` + access + `","expires":1}}}`
		f, err := decodeFrame([]byte(body), epoch)
		if err != nil {
			t.Fatal(err)
		}
		return f.Entry.Credential.fingerprint
	}
	a1, a2, b := mk("token-a"), mk("token-a"), mk("token-b")
	if a1 == 0 || a1 != a2 || a1 == b {
		t.Fatalf("fingerprints a=%x a'=%x b=%x", a1, a2, b)
	}
}

func TestDecodeRemovedAndEntryFrames(t *testing.T) {
	r := `{"kind":"removed","generation":43,"serverNowMs":1795751866545,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":13434},"id":4}`
	f, err := decodeFrame([]byte(r), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != FrameRemoved || f.RemovedID != 4 || f.Generation != 43 || !f.ServerNow.Equal(time.UnixMilli(1795751866545)) {
		t.Fatalf("%+v", f)
	}
	e := `{"kind":"entry","generation":21,"serverNowMs":1795751777704,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":42275},"entry":{"id":4,"provider":"openai","credential":{"type":"api_key","key":"sk-spec-test-1","source":"login"},"identityKey":null,"rotatesInMs":null}}`
	f, err = decodeFrame([]byte(e), epoch)
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != FrameEntry || f.Entry.ID != 4 || f.Entry.Credential.Type != TypeAPIKey || f.Entry.Credential.Source != "login" || f.Entry.HasRotatesIn {
		t.Fatalf("%+v %+v", f, f.Entry)
	}
}

func TestDecodeUsage(t *testing.T) {
	body := `{"generatedAt":1795751807976,"reports":[
	 {"provider":"anthropic","fetchedAt":1795751800000,"raw":{"token":"` + canaryAccess + `"},
	  "metadata":{"endpoint":"e","accountId":"  ","account_id":" Acct-A ","email":42,"orgId":" Org-1 ","projectId":"p1","secret":"` + canaryExtra + `"},
	  "limits":[{"id":"anthropic:5h","label":"Claude 5 Hour","scope":{"provider":"anthropic","windowId":"5h","shared":true,"accountId":" Acct-S"},
	   "window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":1795760000000},
	   "amount":{"used":42,"limit":100,"remaining":58,"usedFraction":0.42,"remainingFraction":0.58,"unit":"percent"},"status":"ok"}]}]}`
	u, err := decodeUsage("GET /v1/usage", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Reports) != 1 || !u.GeneratedAt.Equal(time.UnixMilli(1795751807976)) {
		t.Fatalf("%+v", u)
	}
	r := u.Reports[0]
	want := UsageMetadata{AccountID: "Acct-A", OrgID: "Org-1", ProjectID: "p1"}
	if r.Metadata != want {
		t.Fatalf("metadata = %+v, want %+v (blank accountId falls back to account_id; non-string email ignored)", r.Metadata, want)
	}
	l := r.Limits[0]
	if l.Scope.AccountID != " Acct-S" || l.Window.Duration != 5*time.Hour ||
		!l.Window.ResetsAt.Equal(time.UnixMilli(1795760000000)) || *l.Amount.Used != 42 || l.Amount.Unit != "percent" || l.Status != "ok" {
		t.Fatalf("limit %+v", l)
	}
	assertNoCanary(t, "usage", fmt.Sprintf("%#v", u))
}

// TestDecodeUsageReportList: the edge cases of the report list.
func TestDecodeUsageReportList(t *testing.T) {
	rep := func(p string) string { return `{"provider":"` + p + `","limits":[{"id":"x","status":"ok"}]}` }
	for _, tc := range []struct {
		body      string
		providers []string // nil = want an error
	}{
		{`{"reports":[]}`, []string{}},
		{`{"reports":[` + rep("a") + `,` + rep("b") + `]}`, []string{"a", "b"}},
		{`{"reports":[` + rep("a") + `],"reports":[` + rep("b") + `]}`, nil}, // a duplicate key
		{`{"reports":null}`, nil},
		{`{}`, nil},
		{`{"reports":"x"}`, nil},
		{`{"reports":{}}`, nil},
		{`{"reports":[` + rep("a") + `,{"limits":[]}]}`, nil}, // report without provider
		{`{"reports":[` + rep("a") + `,42]}`, nil},
		{`{"reports":[{"provider":"a","limits":[{"id":7}]}]}`, nil},
		{`{"reports":[` + rep("a") + `,]}`, nil},
		// The scope fields matching does not read are dropped, but still
		// checked for their type.
		{`{"reports":[{"provider":"a","limits":[{"scope":{"provider":"a","tier":null,"shared":false}}]}]}`, []string{"a"}},
		{`{"reports":[{"provider":"a","limits":[{"scope":{"tier":1}}]}]}`, nil},
		{`{"reports":[{"provider":"a","limits":[{"scope":{"shared":"yes"}}]}]}`, nil},
		{`{"reports":[{"provider":"a","limits":[{"scope":{"Tier":"x"}}]}]}`, nil},
	} {
		u, err := decodeUsage("GET /v1/usage", []byte(tc.body))
		if tc.providers == nil {
			if err == nil {
				t.Errorf("%s: no error", tc.body)
			} else {
				checkProtoErr(t, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		var got []string
		for _, r := range u.Reports {
			got = append(got, r.Provider)
		}
		if u.Reports == nil || !slices.Equal(append([]string{}, got...), tc.providers) {
			t.Errorf("%s: providers %q, want %q", tc.body, got, tc.providers)
		}
	}
}

func TestDecodeTombstones(t *testing.T) {
	body := `{"generatedAt":1,"disabled":[{"id":5,"provider":"anthropic","type":"oauth","email":"a@x","cause":"oauth refresh failed: invalid_grant","disabledAtMs":1795751000000},{"id":6,"provider":"openai","type":"api_key","cause":"replaced by oauth login"}]}`
	ts, err := decodeDisabled("t", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].ID != 5 || ts[0].Email != "a@x" || !ts[0].DisabledAt.Equal(time.UnixMilli(1795751000000)) || !ts[1].DisabledAt.IsZero() {
		t.Fatalf("%+v", ts)
	}
}
