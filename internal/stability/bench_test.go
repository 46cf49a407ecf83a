package stability

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"runtime"
	"testing"
)

const (
	bigArtifacts = 10
	bigImageSize = 3 << 20 // bytes per image, about an SDXL PNG
)

// bigBody returns a JSON answer with 10 images of 3 MiB (about 40 MiB of
// base64) and the SHA-256 of each image.
func bigBody(tb testing.TB) ([]byte, [][sha256.Size]byte) {
	tb.Helper()
	images := make([][]byte, bigArtifacts)
	sums := make([][sha256.Size]byte, bigArtifacts)
	seeds := make([]uint32, bigArtifacts)
	reasons := make([]string, bigArtifacts)
	for i := range images {
		images[i] = testImage(i, bigImageSize)
		sums[i] = sha256.Sum256(images[i])
		seeds[i] = uint32(i)
		reasons[i] = FinishSuccess
	}
	return artifactsBody(images, seeds, reasons, 1, ""), sums
}

// hashSink hashes each image and keeps nothing else.
type hashSink struct {
	h    hash.Hash
	sums [][sha256.Size]byte
}

func (s *hashSink) Begin(int) (io.Writer, error) {
	s.h.Reset()
	return s.h, nil
}

func (s *hashSink) End(int, Artifact) error {
	s.sums = append(s.sums, [sha256.Size]byte(s.h.Sum(nil)))
	return nil
}

// bytesAllocated returns the bytes f allocates on the heap, all goroutines
// included.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestJSONDecodingAllocatesLittle(t *testing.T) {
	body, want := bigBody(t)
	check := func(t *testing.T, sink *hashSink, limit, alloc uint64) {
		t.Helper()
		if len(sink.sums) != bigArtifacts {
			t.Fatalf("decoded %d images, want %d", len(sink.sums), bigArtifacts)
		}
		for i := range want {
			if sink.sums[i] != want[i] {
				t.Errorf("image %d differs", i)
			}
		}
		t.Logf("%d-byte body: %d bytes allocated (%.3f%%)", len(body), alloc, 100*float64(alloc)/float64(len(body)))
		if alloc > limit {
			t.Errorf("allocated %d bytes for a %d-byte body, want ≤ %d", alloc, len(body), limit)
		}
	}

	t.Run("scanner", func(t *testing.T) {
		sink := &hashSink{h: sha256.New()}
		var err error
		alloc := bytesAllocated(func() {
			_, err = scanArtifacts(bytes.NewReader(body), bigArtifacts, sink, "", newRedactor(testKey), new(buffers))
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, sink, 256<<10, alloc) // buffers are ~100 KiB
	})

	t.Run("client over loopback", func(t *testing.T) {
		c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
		sink := &hashSink{h: sha256.New()}
		var err error
		alloc := bytesAllocated(func() {
			_, err = c.TextToImage(t.Context(), "eng", TextToImageRequest{Samples: bigArtifacts}, sink)
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, sink, 2<<20, alloc) // the server and transport add their own buffers
	})
}

func BenchmarkScanArtifacts10x3MiB(b *testing.B) {
	body, _ := bigBody(b)
	b.SetBytes(int64(len(body)))
	bufs := new(buffers)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := scanArtifacts(bytes.NewReader(body), bigArtifacts, &discardSink{}, "", newRedactor(testKey), bufs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTextToImageJSON10x3MiB(b *testing.B) {
	body, _ := bigBody(b)
	c := newTestClient(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.TextToImage(b.Context(), "eng", TextToImageRequest{Samples: bigArtifacts}, &discardSink{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTextToImagePNG3MiB(b *testing.B) {
	img := testImage(0, bigImageSize)
	c := newTestClient(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Seed", "1")
		w.Header().Set("Finish-Reason", "SUCCESS")
		w.Write(img)
	})
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.TextToImage(b.Context(), "eng", TextToImageRequest{}, &discardSink{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStableImageStreamsLargeAnswer(t *testing.T) {
	const size = 16 << 20 // bytes, more than any Stable Image output
	img := fakeImage("png", 1, size)
	want := sha256.Sum256(img)
	body := imageJSON(img, "1", "SUCCESS") // built outside the count
	answers := map[string]func(w http.ResponseWriter){
		"raw": func(w http.ResponseWriter) { answerImage(w, "png", img, "1", "SUCCESS", "") },
		"json": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json; type=image/png")
			io.WriteString(w, body)
		},
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				answer(w)
			})
			sink := &hashSink{h: sha256.New()}
			var err error
			alloc := bytesAllocated(func() {
				_, err = c.StableImage(t.Context(), "generate/core", []Field{{Name: "prompt", Value: "x"}}, sink)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(sink.sums) != 1 || sink.sums[0] != want {
				t.Fatalf("the sink did not get the image")
			}
			t.Logf("%d-byte image: %d bytes allocated", size, alloc)
			// About 0.25 MiB; -race builds allocate about four times as much.
			if limit := uint64(2 << 20); alloc > limit {
				t.Errorf("allocated %d bytes for a %d-byte image, want ≤ %d", alloc, size, limit)
			}
		})
	}
}

func TestStableImageStreamsLargeInput(t *testing.T) {
	const size = 8 << 20 // bytes of input, near the API's 10 MiB body limit
	img := fakeImage("png", 2, size)
	path := writeFile(t, "big.png", img)
	want := sha256.Sum256(img)
	answer := fakeImage("png", 3, 100)
	var got [sha256.Size]byte
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		// The server hashes the file part as it arrives, so that only the
		// client's buffers show in the count.
		mr, err := r.MultipartReader()
		if err != nil {
			t.Error(err)
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			h := sha256.New()
			io.Copy(h, p)
			if p.FormName() == "image" {
				got = [sha256.Size]byte(h.Sum(nil))
			}
		}
		answerImage(w, "png", answer, "", "SUCCESS", "")
	})
	var err error
	alloc := bytesAllocated(func() {
		_, err = c.StableImage(t.Context(), "upscale/fast", []Field{{Name: "image", Value: path}}, &discardSink{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatal("the server did not get the input")
	}
	t.Logf("%d-byte input: %d bytes allocated", size, alloc)
	// About 0.2 MiB, with -race too: the body is never held.
	if limit := uint64(1 << 20); alloc > limit {
		t.Errorf("allocated %d bytes for a %d-byte input, want ≤ %d", alloc, size, limit)
	}
}

func BenchmarkStableImageUpload8MiB(b *testing.B) {
	img := fakeImage("png", 2, 8<<20)
	path := writeFile(b, "big.png", img)
	answer := fakeImage("png", 3, 100)
	c := newTestClient(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		answerImage(w, "png", answer, "", "SUCCESS", "")
	})
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.StableImage(b.Context(), "upscale/fast", []Field{{Name: "image", Value: path}}, &discardSink{}); err != nil {
			b.Fatal(err)
		}
	}
}
