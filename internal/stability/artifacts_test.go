package stability

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestScanArtifactsShapes(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		images []string
		arts   []Artifact
	}{
		{
			name:   "escaped slash and line breaks in base64",
			body:   `{"artifacts":[{"base64":"aGVsbG8\/d29y\nbGQ=\r\n","seed":3,"finishReason":"SUCCESS"}]}`,
			images: []string{"hello?world"},
			arts:   []Artifact{{Seed: 3, FinishReason: FinishSuccess}},
		},
		{
			name:   "unicode escapes in base64 and keys",
			body:   `{"\u0061rtifacts":[{"b\u0061se64":"\u0061\u0047VsbG8=","s\u0065ed":1,"finishReason":"\u0053UCCESS"}]}`,
			images: []string{"hello"},
			arts:   []Artifact{{Seed: 1, FinishReason: FinishSuccess}},
		},
		{
			name: "unknown keys of every type are skipped",
			body: `{"id":"x","meta":{"a":[1,-2.5e3,true,false,null,{"b":"c\"}"}],"d":{}},"artifacts":[` +
				`{"index":0,"base64":"","extra":[[[]]],"seed":0,"finishReason":"CONTENT_FILTERED","note":"\u00e9\ud83d\ude00"}` +
				`],"after":"done"}`,
			images: []string{""},
			arts:   []Artifact{{Seed: 0, FinishReason: FinishContentFiltered}},
		},
		{
			name:   "metadata before the image",
			body:   `{"artifacts":[{"finishReason":"SUCCESS","seed":9,"base64":"YQ=="},{"seed":8,"finishReason":"CONTENT_FILTERED","base64":"Yg=="}]}`,
			images: []string{"a", "b"},
			arts:   []Artifact{{Seed: 9, FinishReason: FinishSuccess}, {Seed: 8, FinishReason: FinishContentFiltered}},
		},
		{
			name: "long unknown key and empty array",
			body: `{"` + strings.Repeat("k", 500) + `":"v","artifacts":[]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read exercises every buffer boundary.
			sink := newMemSink()
			arts, err := scanArtifacts(iotest.OneByteReader(strings.NewReader(tt.body)), 10, sink, "req-7", newRedactor(testKey), new(buffers))
			if err != nil {
				t.Fatalf("scanArtifacts: %v", err)
			}
			if sink.err != nil {
				t.Fatalf("sink contract: %v", sink.err)
			}
			if len(arts) != len(tt.arts) {
				t.Fatalf("got %d artifacts, want %d", len(arts), len(tt.arts))
			}
			for i := range arts {
				want := tt.arts[i]
				want.Format, want.RequestID = "png", "req-7"
				if arts[i] != want || sink.arts[i] != want || string(sink.images[i]) != tt.images[i] {
					t.Errorf("artifact %d = %+v (sink %+v) %q, want %+v %q", i, arts[i], sink.arts[i], sink.images[i], want, tt.images[i])
				}
			}
		})
	}
}

func TestScanArtifactsSyntaxErrors(t *testing.T) {
	for _, body := range []string{
		`{"artifacts":[]`,
		`{"artifacts":[],}`,
		`{"artifacts" []}`,
		`{artifacts:[]}`,
		`{"artifacts":[{"base64":"YQ==" "seed":1}]}`,
		`{"x":tru,"artifacts":[]}`,
		`{"x":01,"artifacts":[]}`,
		`{"x":1.,"artifacts":[]}`,
		`{"x":-,"artifacts":[]}`,
		`{"x":"a` + "\n" + `b","artifacts":[]}`,
		`{"x":"\q","artifacts":[]}`,
		`{"x":"\u12G4","artifacts":[]}`,
		`{"x":[1 2],"artifacts":[]}`,
		`{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"artifacts":[]}`,
		`{"artifacts":[],"artifacts":[]}`,
		`{"artifacts":[1]}`,
	} {
		_, err := scanArtifacts(strings.NewReader(body), 10, newMemSink(), "", newRedactor(testKey), new(buffers))
		if !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("scanArtifacts(%q) error = %v, want ErrMalformedResponse", body, err)
		}
	}
}

func TestScanArtifactsReadError(t *testing.T) {
	errRead := errors.New("connection reset")
	body := artifactsBody([][]byte{testImage(0, 3000)}, []uint32{1}, []string{"SUCCESS"}, 0, "")
	for _, cut := range []int{0, 5, 20, 200, len(body) - 2} {
		r := iotest.DataErrReader(&errAfter{b: body[:cut], err: errRead})
		_, err := scanArtifacts(r, 1, newMemSink(), "", newRedactor(testKey), new(buffers))
		if !errors.Is(err, errRead) {
			t.Errorf("cut at %d: error = %v, want the read error", cut, err)
		}
	}
}

// errAfter returns b, then err.
type errAfter struct {
	b   []byte
	err error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// FuzzScanArtifacts checks, for any input, that the scanner does not panic,
// keeps the Sink contract, and accepts only bodies that encoding/json also
// reads to the same images, seeds and finish reasons.
func FuzzScanArtifacts(f *testing.F) {
	f.Add(artifactsBody([][]byte{[]byte("png")}, []uint32{1}, []string{"SUCCESS"}, 0, ""))
	f.Add(artifactsBody([][]byte{{}, {1, 2}}, []uint32{0, 7}, []string{"ERROR", "CONTENT_FILTERED"}, 3, " \n"))
	f.Add([]byte(`{"artifacts":[{"base64":"aGVsbG8\/d29y\nbGQ=","seed":3,"finishReason":"SUCCESS","x":[{"y":null}]}]}`))
	f.Add([]byte(`{"a":"\ud83d\ude00\ud800","artifacts":[]}`))
	f.Add([]byte(`{"artifacts":[{"base64":"YQ==YQ==","seed":1,"finishReason":"SUCCESS"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sink := newMemSink()
		arts, err := scanArtifacts(bytes.NewReader(body), 10, sink, "", newRedactor(testKey), new(buffers))
		if sink.err != nil {
			t.Fatalf("sink contract: %v", sink.err)
		}
		if err != nil {
			return
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("scanner accepted a body encoding/json rejects: %v", err)
		}
		var items []map[string]json.RawMessage
		if err := json.Unmarshal(doc["artifacts"], &items); err != nil {
			t.Fatalf("artifacts: %v", err)
		}
		if len(items) != len(arts) || len(sink.images) != len(arts) || len(sink.arts) != len(arts) {
			t.Fatalf("scanner: %d artifacts (%d images, %d ends), encoding/json: %d", len(arts), len(sink.images), len(sink.arts), len(items))
		}
		for i, item := range items {
			var img []byte
			var seed uint32
			var reason string
			if err := errors.Join(json.Unmarshal(item["base64"], &img), json.Unmarshal(item["seed"], &seed), json.Unmarshal(item["finishReason"], &reason)); err != nil {
				t.Fatalf("artifact %d: encoding/json: %v", i, err)
			}
			if !bytes.Equal(img, sink.images[i]) || seed != arts[i].Seed || reason != arts[i].FinishReason || arts[i] != sink.arts[i] {
				t.Fatalf("artifact %d: scanner %+v %x, encoding/json {%d %s} %x", i, arts[i], sink.images[i], seed, reason, img)
			}
		}
	})
}

// FuzzArtifactsRoundTrip builds valid bodies from fuzzed images, seeds, key
// orders and whitespace, and checks that they decode to what was encoded.
func FuzzArtifactsRoundTrip(f *testing.F) {
	f.Add([]byte("first image"), []byte{}, uint32(1), uint32(4294967295), uint8(0), uint8(0), " ")
	f.Add([]byte{0x89, 'P', 'N', 'G'}, []byte{0, 0, 0}, uint32(0), uint32(42), uint8(5), uint8(2), "\r\n\t")
	f.Fuzz(func(t *testing.T, img0, img1 []byte, seed0, seed1 uint32, order, reasons uint8, sep string) {
		sep = strings.Map(func(r rune) rune { // keep only JSON whitespace
			if strings.ContainsRune(" \t\r\n", r) {
				return r
			}
			return -1
		}, sep)
		all := []string{FinishSuccess, FinishError, FinishContentFiltered}
		images := [][]byte{img0, img1}
		seeds := []uint32{seed0, seed1}
		rs := []string{all[reasons%3], all[reasons/3%3]}
		body := artifactsBody(images, seeds, rs, int(order), sep)
		body = bytes.ReplaceAll(body, []byte("/"), []byte(`\/`)) // as some encoders write it
		sink := newMemSink()
		arts, err := scanArtifacts(bytes.NewReader(body), 2, sink, "", newRedactor(testKey), new(buffers))
		if err != nil {
			t.Fatalf("scanArtifacts(%q): %v", body, err)
		}
		for i := range 2 {
			if want := (Artifact{Seed: seeds[i], FinishReason: rs[i], Format: "png"}); arts[i] != want || !bytes.Equal(sink.images[i], images[i]) {
				t.Fatalf("artifact %d = %+v %x, want %+v %x", i, arts[i], sink.images[i], want, images[i])
			}
		}
	})
}

func TestBase64Padding(t *testing.T) {
	// Every length mod 3 ends with a different padding; all must round-trip
	// through the streaming decoder, including across buffer boundaries.
	for n := range 10 {
		img := testImage(n, n+copyBufferSize)
		body := `{"artifacts":[{"base64":"` + base64.StdEncoding.EncodeToString(img) + `","seed":1,"finishReason":"SUCCESS"}]}`
		sink := newMemSink()
		if _, err := scanArtifacts(strings.NewReader(body), 1, sink, "", newRedactor(testKey), new(buffers)); err != nil {
			t.Fatalf("length %d: %v", len(img), err)
		}
		if !bytes.Equal(sink.images[0], img) {
			t.Errorf("length %d: image differs", len(img))
		}
	}
}
