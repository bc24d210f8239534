package brokertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The broker validates bodies with ArkType and answers its summary; these
// helpers reproduce the messages for the shapes clients actually get wrong
// (type mismatches, missing or empty fields, extra keys, the refresh
// sentinel). Several problems are joined by "\n" like the real summary.

type problems []string

func (p *problems) add(format string) { *p = append(*p, format) }

func (p problems) msg() string { return strings.Join(p, "\n") }

// describe is ArkType's "(was …)" wording for a JSON value.
func describe(raw json.RawMessage) string {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 {
		return "missing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	}
	return "a number"
}

// decodeBody parses a request body the way the broker does: empty is
// "Request body required" unless allowEmpty (then {}), malformed JSON is
// "Invalid JSON body: …", and a non-object is "must be an object (was …)".
// Arrays pass as objects without keys, as they do in ArkType.
func decodeBody(body string, allowEmpty bool) (map[string]json.RawMessage, string) {
	if body == "" {
		if !allowEmpty {
			return nil, "Request body required"
		}
		return map[string]json.RawMessage{}, ""
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, "Invalid JSON body: SyntaxError: JSON Parse error: " + jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, "Invalid JSON body: SyntaxError: JSON Parse error: Unexpected content after JSON value"
	}
	trimmed := bytes.TrimSpace(raw)
	switch trimmed[0] {
	case '[':
		return map[string]json.RawMessage{}, ""
	case '{':
	default:
		return nil, "must be an object (was " + describe(trimmed) + ")"
	}
	obj := map[string]json.RawMessage{}
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil, "Invalid JSON body: SyntaxError: JSON Parse error: " + jsonProblem(err)
	}
	return obj, ""
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return syn.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "Unexpected EOF"
	}
	return err.Error()
}

// str checks an optional or required string field.
func str(obj map[string]json.RawMessage, path, key string, required, nonEmpty bool, p *problems) (string, bool) {
	raw, ok := obj[key]
	if !ok {
		if required {
			want := "a string"
			if nonEmpty {
				want = "a string (length at least 1)"
			}
			p.add(path + key + " must be " + want + " (was missing)")
		}
		return "", false
	}
	var s string
	if describe(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		p.add(path + key + " must be a string (was " + describe(raw) + ")")
		return "", false
	}
	if nonEmpty && s == "" {
		p.add(path + key + " must be at least length 1 (was 0)")
		return "", false
	}
	return s, true
}

// num checks a number field; JSON numbers beyond float64 are Infinity in
// JavaScript, which ArkType's "number" rejects.
func num(obj map[string]json.RawMessage, path, key string, required bool, p *problems) (float64, bool) {
	raw, ok := obj[key]
	if !ok {
		if required {
			p.add(path + key + " must be a number (was missing)")
		}
		return 0, false
	}
	if describe(raw) != "a number" {
		p.add(path + key + " must be a number (was " + describe(raw) + ")")
		return 0, false
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		p.add(path + key + " must be a number (was a number)")
		return 0, false
	}
	return f, true
}

func rejectExtra(obj map[string]json.RawMessage, path string, allowed map[string]bool, p *problems) {
	keys := make([]string, 0)
	for k := range obj {
		if !allowed[k] {
			keys = append(keys, k)
		}
	}
	sortStrings(keys)
	for _, k := range keys {
		p.add(path + k + " must be removed")
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

const credentialShape = `{ apiEndpoint?: a string, type: "oauth", refresh: a string, access: a string (length at least 1), expires: a number, enterpriseUrl?: a string, projectId?: a string, email?: a string, accountId?: a string, orgId?: a string, orgName?: a string, authorizedAt?: a number } or { type: "api_key", key: a string (length at least 1), source?: "login" }`

// parseUpload validates a POST /v1/credential body into a new row.
func parseUpload(body string) (*row, string) {
	obj, msg := decodeBody(body, false)
	if msg != "" {
		return nil, msg
	}
	var p problems
	provider, _ := str(obj, "", "provider", true, true, &p)
	rawCred, hasCred := obj["credential"]
	var r *row
	switch {
	case !hasCred:
		p.add("credential must be " + credentialShape + " (was missing)")
	case describe(rawCred) == "an object" || describe(rawCred) == "an array":
		r = parseCredential(rawCred, &p)
	default:
		p.add("credential must be an object (was " + describe(rawCred) + ")")
	}
	rejectExtra(obj, "", map[string]bool{"provider": true, "credential": true}, &p)
	if len(p) > 0 {
		return nil, p.msg()
	}
	r.provider = provider
	return r, ""
}

func parseCredential(raw json.RawMessage, p *problems) *row {
	c := map[string]json.RawMessage{}
	if describe(raw) == "an object" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		_ = dec.Decode(&c)
	}
	var typ string
	rawType, hasType := c["type"]
	if hasType {
		_ = json.Unmarshal(rawType, &typ)
	}
	switch {
	case typ == "api_key":
		key, _ := str(c, "credential.", "key", true, true, p)
		src, hasSrc := c["source"]
		var source string
		if hasSrc {
			if json.Unmarshal(src, &source) != nil || source != "login" {
				p.add(`credential.source must be "login" (was ` + string(bytes.TrimSpace(src)) + ")")
			}
		}
		rejectExtra(c, "credential.", map[string]bool{"type": true, "key": true, "source": true}, p)
		return &row{apiKey: true, key: key, source: source}
	case typ == "oauth":
		o := OAuth{}
		refresh, ok := str(c, "credential.", "refresh", true, false, p)
		if ok && refresh == remoteSentinel {
			p.add(`credential.refresh must be not equal to the remote sentinel (` + remoteSentinel + `) (was "` + remoteSentinel + `")`)
		}
		o.Refresh = refresh
		o.Access, _ = str(c, "credential.", "access", true, true, p)
		if exp, ok := num(c, "credential.", "expires", true, p); ok {
			o.Expires = time.UnixMilli(int64(math.Round(exp)))
		}
		o.Email, _ = str(c, "credential.", "email", false, false, p)
		o.AccountID, _ = str(c, "credential.", "accountId", false, false, p)
		o.ProjectID, _ = str(c, "credential.", "projectId", false, false, p)
		o.OrgID, _ = str(c, "credential.", "orgId", false, false, p)
		o.OrgName, _ = str(c, "credential.", "orgName", false, false, p)
		str(c, "credential.", "enterpriseUrl", false, false, p)
		str(c, "credential.", "apiEndpoint", false, false, p)
		num(c, "credential.", "authorizedAt", false, p)
		for k, v := range c {
			if standardOAuthKeys[k] {
				continue
			}
			if o.Extra == nil {
				o.Extra = map[string]any{}
			}
			o.Extra[k] = json.RawMessage(append([]byte(nil), bytes.TrimSpace(v)...))
		}
		return &row{oauth: o}
	default:
		was := "missing"
		if describe(raw) == "an object" {
			was = "undefined"
			if hasType {
				was = string(bytes.TrimSpace(rawType))
			}
		}
		p.add(`credential.type must be "oauth" or "api_key" (was ` + was + ")")
		return nil
	}
}

// parseDisable validates the optional {cause?} body.
func parseDisable(body string) (string, string) {
	obj, msg := decodeBody(body, true)
	if msg != "" {
		return "", msg
	}
	var p problems
	cause, _ := str(obj, "", "cause", false, false, &p)
	rejectExtra(obj, "", map[string]bool{"cause": true}, &p)
	return cause, p.msg()
}

type blockReq struct {
	providerKey  string
	scope        string
	blockedUntil int64
}

// parseBlock validates {providerKey, blockScope, blockedUntilMs, updatedAtMs?}.
func parseBlock(body string) (blockReq, string) {
	obj, msg := decodeBody(body, false)
	if msg != "" {
		return blockReq{}, msg
	}
	var p problems
	var req blockReq
	req.providerKey, _ = str(obj, "", "providerKey", true, true, &p)
	req.scope, _ = str(obj, "", "blockScope", true, false, &p)
	until, _ := num(obj, "", "blockedUntilMs", true, &p)
	req.blockedUntil = int64(until)
	num(obj, "", "updatedAtMs", false, &p)
	rejectExtra(obj, "", map[string]bool{"providerKey": true, "blockScope": true, "blockedUntilMs": true, "updatedAtMs": true}, &p)
	return req, p.msg()
}
