package cost_test

import (
	"errors"
	"fmt"

	"github.com/batch-tool/batch/internal/cost"
)

func ExampleCredits() {
	c, err := cost.ParseCredits("0.200053")
	if err != nil {
		panic(err)
	}
	total := 3*c + 2*cost.Credit
	fmt.Println(total, total.Fixed(2), total.USD())
	// Output: 2.600159 2.60 $0.02600159
}

func ExampleSheet_ImagePrice() {
	for _, id := range []string{"dreamstudio-2022", "v1-2023", "sdxl-2024", "stability-2025-08"} {
		s, err := cost.LookupSheet(id)
		if err != nil {
			panic(err)
		}
		price, err := s.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 50)
		fmt.Println(id, price, err)
	}
	// Output:
	// dreamstudio-2022 9.4 <nil>
	// v1-2023 2.0 <nil>
	// sdxl-2024 1.5 <nil>
	// stability-2025-08 1.5 <nil>
}

func ExampleSheet_ImagePrice_retired() {
	s, _ := cost.LookupSheet(cost.DefaultSheet)
	_, err := s.ImagePrice("stable-diffusion-v1-6", 512, 512, 30)
	fmt.Println(err)
	fmt.Println(errors.Is(err, cost.ErrRetired), errors.Is(err, cost.ErrNoPrice))
	// Output:
	// stable-diffusion-v1-6 was retired 2025-07-24; price it with --pricing sdxl-2024 (also priced by dreamstudio-2022)
	// true true
}

func ExampleSheet_ImagePrice_noPrice() {
	s, _ := cost.LookupSheet("sdxl-2024")
	_, err := s.ImagePrice("stable-diffusion-xl-beta-v2-2-2", 512, 512, 30)
	fmt.Println(err)
	// Output: no price for engine "stable-diffusion-xl-beta-v2-2-2" in sheet "sdxl-2024" (it prices stable-diffusion-xl-1024-v1-0, stable-diffusion-v1-6); price it with --pricing v1-2023 (also priced by dreamstudio-2022)
}

func ExampleSheet_ServicePrice() {
	s, _ := cost.LookupSheet(cost.DefaultSheet)
	for _, job := range [][2]string{{"generate/core", ""}, {"generate/ultra", ""}, {"generate/sd3", "sd3.5-flash"}, {"upscale/creative", ""}} {
		price, err := s.ServicePrice(job[0], job[1])
		fmt.Println(job[0], job[1], price, price.USD(), err)
	}
	old, _ := cost.LookupSheet("dreamstudio-2022")
	_, err := old.ServicePrice("generate/core", "")
	fmt.Println(err)
	// Output:
	// generate/core  3.0 $0.03 <nil>
	// generate/ultra  8.0 $0.08 <nil>
	// generate/sd3 sd3.5-flash 2.5 $0.025 <nil>
	// upscale/creative  60.0 $0.60 <nil>
	// generate/core has no price in dreamstudio-2022 (2022-08-01 to 2022-11-30); price it with --pricing stability-2025-08
}

func ExampleCheckBudget() {
	fmt.Println(cost.CheckBudget(120*cost.Credit, 120*cost.Credit))
	fmt.Println(cost.CheckBudget(120*cost.Credit+1, 120*cost.Credit))
	// Output:
	// <nil>
	// over budget: estimate 120.000001 credits exceeds budget 120.0 credits
}
