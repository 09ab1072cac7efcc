// Package cost says what the cleanup is worth: the storage snapsweep's
// deletions freed (at most) and the monthly cost they avoid, and the
// storage and monthly cost of what is kept, by why it is kept, per session,
// per project and overall. It computes from registry records only (the
// sizes Compute reported when snapsweep read each snapshot) and a price
// table that is configuration, never fetched at run time.
//
// It reads records and never changes them; its figures are reports, and no
// decision about a snapshot may depend on them. Its vocabulary (Amount,
// Figures, ...) is package cost/figures', aliased here.
package cost

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Location classes of a snapshot's storage location.
const (
	MultiRegion = "multi-region"
	Region      = "region"
)

// Prices is a price table: US dollars (or Currency) per GiB-month of
// snapshot storage, by snapshot type (STANDARD, ARCHIVE), location class
// (multi-region, region) and storage location ("us", "us-central1"). A
// location not listed has no price: it is reported, never guessed, unless
// the class lists "*" (one price for every location of the class, which
// only an operator's price file should do).
type Prices struct {
	// Source and TakenOn say where the figures come from and when.
	Source  string `json:"source"`
	TakenOn string `json:"takenOn"`
	// Currency of the figures (default USD).
	Currency string `json:"currency,omitempty"`
	// PerGiBMonth is type → class → location → price.
	PerGiBMonth map[string]map[string]map[string]float64 `json:"perGiBMonth"`
}

// DefaultSource and DefaultTakenOn describe the default table.
const (
	DefaultSource  = "https://cloud.google.com/compute/disks-image-pricing#disk-snapshots (Compute Engine, disk and image pricing: standard and archive snapshot storage, US locations)"
	DefaultTakenOn = "2025-06 (list prices as published then, written down from the page, not fetched by snapsweep; check them against the page and your contract before relying on them)"
)

// DefaultPrices is the built-in table: Google's published list prices for
// snapshot storage in US locations (docs/operations.md says which and
// when). Other locations have no default price and are reported as such:
// set SNAPSWEEP_PRICE_FILE to price them.
func DefaultPrices() Prices {
	us := func(price float64) map[string]float64 {
		return map[string]float64{"us-central1": price, "us-east1": price, "us-east4": price, "us-west1": price}
	}
	return Prices{
		Source: DefaultSource, TakenOn: DefaultTakenOn, Currency: "USD",
		PerGiBMonth: map[string]map[string]map[string]float64{
			"STANDARD": {MultiRegion: {"us": 0.065}, Region: us(0.05)},
			"ARCHIVE":  {MultiRegion: {"us": 0.024}, Region: us(0.019)},
		},
	}
}

// LoadPrices reads a price file (YAML or JSON, the shape of Prices). The
// file replaces the default table as a whole, so that contract prices are
// never mixed with dated list prices without the operator seeing it.
func LoadPrices(path string) (Prices, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Prices{}, fmt.Errorf("price file: %w", err)
	}
	var p Prices
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return Prices{}, fmt.Errorf("price file %s: %w", path, err)
	}
	if p.Source == "" {
		p.Source = path
	}
	if err := p.Validate(); err != nil {
		return Prices{}, fmt.Errorf("price file %s: %w", path, err)
	}
	return p, nil
}

// Validate reports every problem of the table at once.
func (p Prices) Validate() error {
	var errs []error
	if len(p.PerGiBMonth) == 0 {
		errs = append(errs, errors.New("perGiBMonth: no prices"))
	}
	for typ, classes := range p.PerGiBMonth {
		if typ != "STANDARD" && typ != "ARCHIVE" {
			errs = append(errs, fmt.Errorf("perGiBMonth.%s: snapshot type must be STANDARD or ARCHIVE", typ))
		}
		for class, locs := range classes {
			if class != MultiRegion && class != Region {
				errs = append(errs, fmt.Errorf("perGiBMonth.%s.%s: location class must be %s or %s", typ, class, MultiRegion, Region))
			}
			for loc, price := range locs {
				if loc != "*" && ClassOf(loc) != class {
					errs = append(errs, fmt.Errorf("perGiBMonth.%s.%s.%s: %s is a %s", typ, class, loc, loc, ClassOf(loc)))
				}
				if price < 0 {
					errs = append(errs, fmt.Errorf("perGiBMonth.%s.%s.%s: negative price", typ, class, loc))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// ClassOf is the class of a storage location: a multi-region (us, eu,
// asia) has no digit in its name, a region (us-central1) does.
func ClassOf(location string) string {
	if strings.ContainsAny(location, "0123456789") {
		return Region
	}
	return MultiRegion
}

// Price returns the price per GiB-month of a snapshot of type typ stored in
// locations (Compute stores a snapshot in one location), and whether the
// table has one.
func (p Prices) Price(typ string, locations []string) (float64, bool) {
	if typ == "" {
		typ = "STANDARD"
	}
	if len(locations) != 1 {
		return 0, false
	}
	loc := locations[0]
	byLoc := p.PerGiBMonth[typ][ClassOf(loc)]
	if v, ok := byLoc[loc]; ok {
		return v, true
	}
	v, ok := byLoc["*"]
	return v, ok
}

// Where names a type and location for a report line.
func Where(typ string, locations []string) string {
	if typ == "" {
		typ = "STANDARD"
	}
	loc := strings.Join(slices.Clone(locations), "+")
	if loc == "" {
		loc = "(no location)"
	}
	return typ + " in " + loc
}
