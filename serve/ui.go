package serve

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/store"
)

// The read-only page at /ui/ for admins: the access map, the certificates
// expiring in the next 30 days with a timeline, and recent revocations.
// Plain server-rendered HTML with its style inline and no script or
// external asset, under a content security policy that allows nothing
// else.

//go:embed ui.html
var uiHTML string

var uiTemplate = template.Must(template.New("ui").Parse(uiHTML))

const (
	uiExpiryWindow = 30 * 24 * time.Hour
	uiRevocations  = 20 // the most recent shown
	uiChartRows    = 40 // timeline rows at most
)

// uiPage is what the template shows; times are RFC 3339 UTC strings.
type uiPage struct {
	CA, Admin, Now string
	Access         []uiAccess
	Expiring       []uiCert
	Revoked        []uiCert
	Chart          uiChart
}

type uiAccess struct {
	Client, ClientSerial, Role, Daemon, DaemonSerial, Groups, Expires string
}

type uiCert struct {
	Name, Kind, Serial, NotAfter, RevokedAt, Reason string
}

// uiChart is an SVG timeline: one bar per certificate from now to its
// expiry, on an axis of the next 30 days.
type uiChart struct {
	Width, Height, Left, LabelX, AxisY int
	Ticks                              []uiTick
	Bars                               []uiBar
}

type uiTick struct {
	X     int
	Label string
}

type uiBar struct {
	Y, TextY, Width     int
	Label, Title, Color string
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) handleUI(w http.ResponseWriter, r *http.Request) error {
	holder, err := s.requireAdmin(r)
	if err != nil {
		return err
	}
	now := time.Now()
	access, err := s.local.Access(r.Context(), api.AccessRequest{})
	if err != nil {
		return err
	}
	expiring, err := s.local.Certificates(r.Context(), api.AdminCertificatesRequest{ExpiringWithin: int64(uiExpiryWindow / time.Second)})
	if err != nil {
		return err
	}
	revoked, err := s.local.Certificates(r.Context(), api.AdminCertificatesRequest{Status: string(store.StatusRevoked)})
	if err != nil {
		return err
	}
	p := uiPage{CA: s.auth().Root().Subject.CommonName, Admin: holder.Name, Now: rfc3339(now)}
	for _, a := range access {
		groups := strings.Join(a.Groups, ", ")
		if groups == "" {
			groups = "—"
		}
		p.Access = append(p.Access, uiAccess{Client: a.Client, ClientSerial: a.ClientSerial, Role: string(a.Role), Daemon: a.Daemon,
			DaemonSerial: a.DaemonSerial, Groups: groups, Expires: rfc3339(a.Expires)})
	}
	slices.SortFunc(expiring, func(a, b ca.ListEntry) int { return a.NotAfter.Compare(b.NotAfter) })
	for _, e := range expiring {
		p.Expiring = append(p.Expiring, uiCert{Name: e.Name, Kind: string(e.Kind), Serial: e.Serial, NotAfter: rfc3339(e.NotAfter)})
	}
	p.Chart = timeline(expiring, now)
	slices.SortFunc(revoked, func(a, b ca.ListEntry) int { return b.RevokedAt.Compare(*a.RevokedAt) })
	for i, e := range revoked {
		if i == uiRevocations {
			break
		}
		p.Revoked = append(p.Revoked, uiCert{Name: e.Name, Kind: string(e.Kind), Serial: e.Serial,
			RevokedAt: rfc3339(*e.RevokedAt), Reason: e.Reason})
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if err := uiTemplate.Execute(w, p); err != nil {
		s.log.Error("render /ui/", "err", err)
	}
	return nil
}

// timeline lays out the expiry chart for entries, soonest first.
func timeline(entries []ca.ListEntry, now time.Time) uiChart {
	c := uiChart{Width: 900, Left: 220, LabelX: 212}
	span := 900 - c.Left - 20
	x := func(t time.Time) int {
		f := float64(t.Sub(now)) / float64(uiExpiryWindow)
		return c.Left + int(min(max(f, 0), 1)*float64(span))
	}
	for d := 0; d <= 30; d += 5 {
		t := now.Add(time.Duration(d) * 24 * time.Hour)
		c.Ticks = append(c.Ticks, uiTick{X: x(t), Label: t.UTC().Format("Jan 2")})
	}
	for i, e := range entries {
		if i == uiChartRows {
			break
		}
		y := 26 + i*18
		color := "#4a7"
		if e.NotAfter.Sub(now) < 7*24*time.Hour {
			color = "#c53"
		}
		c.Bars = append(c.Bars, uiBar{Y: y, TextY: y + 10, Width: max(x(e.NotAfter)-c.Left, 2),
			Label: fmt.Sprintf("%s (%s)", e.Name, e.Kind), Title: fmt.Sprintf("%s %s expires %s", e.Kind, e.Name, rfc3339(e.NotAfter)), Color: color})
	}
	c.Height = 26 + len(c.Bars)*18 + 8
	c.AxisY = c.Height - 4
	return c
}
