package health

import (
	"fmt"
	"math"
	"time"
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func secs(d time.Duration) *float64 {
	f := round3(d.Seconds())
	return &f
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func roundDur(d time.Duration) time.Duration {
	if absDur(d) >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ago and fromNow phrase an instant relative to now for messages.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return human(now.Sub(t)) + " ago"
}

func fromNow(now, t time.Time) string { return "in " + human(t.Sub(now)) }

// human prints d coarsely, two units at most and no trailing zero unit:
// "45s", "3m12s", "5m", "2h05m", "4d3h". Negative durations keep the sign.
func human(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	s := int64(d.Round(time.Second) / time.Second)
	two := func(big, small int64, bu, su, smallFmt string) string {
		if small == 0 {
			return fmt.Sprintf("%s%d%s", sign, big, bu)
		}
		return fmt.Sprintf("%s%d%s"+smallFmt+"%s", sign, big, bu, small, su)
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%s%ds", sign, s)
	case s < 3600:
		return two(s/60, s%60, "m", "s", "%02d")
	case s < 86400:
		return two(s/3600, (s%3600)/60, "h", "m", "%02d")
	}
	return two(s/86400, (s%86400)/3600, "d", "h", "%d")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
