// The admin's sample-size calculator: reads the design from the experiment form, asks the server
// (statsmodels) for the sample size, and can copy the total into "planned sample size".
(function () {
  "use strict";
  const panel = document.getElementById("sample-size-helper");
  if (!panel) return;
  const $ = (id) => document.getElementById(id);
  const result = $("ss-result");
  const useButton = $("ss-use");
  let total = null;

  function formValue(id, fallback) {
    const el = $(id);
    return el && el.value !== "" ? el.value : fallback;
  }
  function liveRows(prefix) {
    return Array.from(document.querySelectorAll(`[id^="id_${prefix}-"][id$="-key"], [id^="id_${prefix}-"][id$="-role"]`))
      .filter((el) => !/__prefix__/.test(el.id))
      .filter((el) => {
        const del = $(el.id.replace(/-(key|role)$/, "-DELETE"));
        return !(del && del.checked);
      });
  }
  function variantCount() {
    const rows = liveRows("variants").filter((el) => el.value.trim() !== "");
    return rows.length >= 2 ? rows.length : Number(panel.dataset.variants) || 2;
  }
  function primaryCount() {
    const rows = liveRows("experiment_metrics").filter((el) => el.value === "primary");
    return Math.max(1, rows.length);
  }
  async function calculate() {
    const params = new URLSearchParams({
      baseline: $("ss-baseline").value, mde: $("ss-mde").value, power: $("ss-power").value, sd: $("ss-sd").value,
      alpha: formValue("id_significance_level", panel.dataset.alpha),
      traffic: formValue("id_traffic_allocation", panel.dataset.traffic),
      n_variants: String(variantCount()), primary: String(primaryCount()),
      correction: formValue("id_correction", panel.dataset.correction),
    });
    result.textContent = "Calculating…";
    try {
      const response = await fetch(`${panel.dataset.url}?${params}`, { credentials: "same-origin" });
      const body = await response.json();
      if (!response.ok) {
        total = null;
        result.textContent = body.error || "The calculation failed.";
      } else {
        total = body.total;
        result.textContent = body.text;
      }
    } catch (e) {
      total = null;
      result.textContent = "The calculation failed: " + e;
    }
    useButton.disabled = total === null || !$("id_planned_sample_size");
  }
  $("ss-calculate").addEventListener("click", calculate);
  useButton.addEventListener("click", () => {
    const field = $("id_planned_sample_size");
    if (field && total !== null) {
      field.value = String(total);
      field.dispatchEvent(new Event("change", { bubbles: true }));
      result.textContent += ` Planned sample size set to ${total.toLocaleString("en")} (save to keep it).`;
    }
  });
})();
