-- Appended to every script bench/wrk.py runs: wrk's done() prints one JSON line, prefixed
-- so that the parser finds it whatever else the script or wrk prints.
function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,'
      .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d}',
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)),
  }
  if wrk_report_extra ~= nil then
    table.insert(parts, '"extra":' .. wrk_report_extra())
  end
  io.write("WRK_JSON " .. "{" .. table.concat(parts, ",") .. "}\n")
end
