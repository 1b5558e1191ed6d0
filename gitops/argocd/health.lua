-- Argo CD health check for slm.dev/SLMDeployment
-- (argocd-cm key resource.customizations.health.slm.dev_SLMDeployment).
-- Healthy: the stable revision serves and is Ready. Progressing: a rollout or a spec change is under way.
-- Degraded: the operator rolled back or failed. Plain Lua 5.1, as Argo CD's gopher-lua runs it.
hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- The first argument that is a non-empty string (arguments may be nil, so no ipairs).
local function first_message(...)
  for i = 1, select("#", ...) do
    local m = select(i, ...)
    if m ~= nil and m ~= "" then
      return m
    end
  end
  return ""
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if status.phase == "Degraded" or status.phase == "Failed" or (degraded ~= nil and degraded.status == "True") then
  hs.status = "Degraded"
  hs.message = first_message(degraded ~= nil and degraded.message or nil, status.message, status.phase)
  return hs
end

local rolling = status.phase == "Deploying" or status.phase == "Validating" or status.phase == "Shadowing"
  or status.phase == "Progressing"
  or status.phase == "Paused"
if status.canaryRevision ~= nil or rolling then
  hs.status = "Progressing"
  local what = status.phase
  if status.canaryRevision ~= nil then
    what = what .. ": canary " .. status.canaryRevision .. " at " .. tostring(status.canaryWeight or 0) .. "%"
  end
  if status.message ~= nil and status.message ~= "" then
    what = what .. " (" .. status.message .. ")"
  end
  hs.message = what
  return hs
end

local ready = condition(status, "Ready")
if status.phase == "Ready" and (ready == nil or ready.status == "True") then
  hs.status = "Healthy"
  hs.message = first_message(status.message, "Serving revision " .. tostring(status.stableRevision))
  return hs
end

hs.status = "Progressing"
hs.message = first_message(ready ~= nil and ready.message or nil, status.message, status.phase)
return hs
