---@meta
-- LuaLS (lua-language-server) annotations of Switchboard's dialplan API:
-- the `call` object, the `log`, `kv`, `registrar`, `pbx`, `mailbox` and `queues` modules, and
-- the spec runner's `sim`, `it`, `before_each` and `expect`. Never loaded
-- by Switchboard (only NAME.lua files directly in dialplans/ are
-- contexts); dialplans/.luarc.json points the editor here.
-- A test (crates/dialplan/src/api.rs) checks it against the functions the
-- runtime really installs. The reference is dialplans/README.md.

---The dialplan API version.
---@type integer
SWITCHBOARD_API = 1

-- The call -------------------------------------------------------------------

---A SIP URI taken apart (From, To, Request-URI).
---@class UriParts
---@field user string The user part (`1001`), "" if none.
---@field host string The host part.
---@field display string? The display name, if the header had one.
---@field uri string The whole URI.

---Where the INVITE came from.
---@class Source
---@field ip string
---@field port integer
---@field transport string `udp`, `tcp`, ...

---@alias DialStatus "answered"|"busy"|"noanswer"|"unavailable"|"cancelled"|"failed"

---What `call:dial` came back with (after the bridged call ended, if answered).
---@class DialResult
---@field status DialStatus
---@field code integer The final SIP status that decided it (200, 486, 408, ...).
---@field answered_by string? The target that answered, as given to `dial` (nil unless answered).

---@class DialConfirm
---@field prompt string A file under sounds/ (`.wav` added).
---@field key string? The key that accepts (default "1").
---@field timeout number? Seconds after the prompt to press it (default 10, 1 to 60).

---@class DialOptions
---@field timeout number? Seconds the targets ring (more than 0, at most 86400).
---@field caller_id string? The caller id the targets see.
---@field headers table<string, string>? Extra headers on the outbound INVITEs.
---@field moh string? Music-on-hold class (sounds/moh/NAME.wav) either side hears when the other holds.
---@field attest "A"|"B"|"C"? STIR/SHAKEN attestation signed on trunk: INVITEs instead of the one the call earns.
---@field confirm DialConfirm? Whoever answers hears the prompt and is put through only after pressing the key.

---STIR/SHAKEN verification of a trunk call's Identity header.
---@class CallIdentity
---@field verified boolean The PASSporT checked out.
---@field attest "A"|"B"|"C"? The attestation it claims (also when not verified).
---@field reason string? Why not: "438 Invalid Identity Header: ...", "428 Use Identity Header: no Identity header", ...

---@class RecordOptions
---@field max number? Longest recording in seconds (default 60, at most 3600).
---@field terminator string? The key that stops it (default "#", "" for none).
---@field silence number? Stop after this many seconds without voice (0.5 to 60).

---@class RecordResult
---@field duration number Seconds recorded.
---@field reason "max"|"terminator"|"silence"|"hangup"

---@class DigitOptions
---@field max integer? Most digits (default 1, at most 64).
---@field timeout number? Seconds to wait for each digit (default 5, at most 300).
---@field terminator string? The key that ends collection (default "#", "" for none).

---@alias RouteOutcome "not_answered"|"answered"|"rejected"|"redirected"|"hung_up"|"bridged"|"caller_gone"|"failed"

---The call `route(call)` handles. After `reject`, `redirect` or `hangup`
---(or once the caller has gone) every action raises "call has ended".
---@class Call
---@field id string The call's id (the inbound leg's Call-ID).
---@field from UriParts The From header.
---@field to UriParts The To header.
---@field request_uri UriParts The Request-URI.
---@field source Source Where the INVITE came from.
---@field caller string? The authenticated extension that placed the call.
---@field context string The context (dialplans/NAME.lua) routing the call.
---@field transfer {by: string, target: string, status: DialStatus?}? Set when a phone blind-transferred the call here: `by` is its extension (the route runs in its context), `target` the number it transferred to; in `on_transfer_failed(call)`, `status` says how the target's dial ended.
---@field trunk string? The [[trunk]] the call came in on (nil for calls from extensions).
---@field did string? The dialled number in E.164 ("+15557654321"), for calls from a trunk.
---@field identity CallIdentity? For a trunk call when security.stir_trust_anchors is set: what checking its Identity found.
---@field state "routing"|"answered"|"ended" Where the call is: "ended" once hung up, rejected, redirected, its bridged call over or the caller gone.
local Call = {}

---The first value of INVITE header `name` (case-insensitive), or nil.
---@param name string
---@return string?
function Call:header(name) end

---Sends 180 Ringing.
function Call:ring() end

---Answers (200 OK).
function Call:answer() end

---Rejects with a final status 400-699; the call is over.
---@param code integer
---@param reason string?
function Call:reject(code, reason) end

---302 with `uri` (sip:, sips:, tel:) as Contact; the call is over.
---@param uri string
function Call:redirect(uri) end

---Rings extension ids or sip: URIs in parallel and bridges the first that
---answers; returns after the bridged call ends.
---@param targets string|string[]
---@param opts DialOptions?
---@return DialResult
function Call:dial(targets, opts) end

---@class PlayOptions
---@field interrupt boolean? A key pressed stops the prompt at once and is returned (barge-in).

---Plays sounds/FILE (".wav" added if no extension; voicemail/... is in the
---mailboxes); answers first if need be. With `interrupt`, returns the key
---that stopped it, or nil if it played out.
---@param file string
---@param opts PlayOptions?
---@return string?
function Call:play(file, opts) end

---Records the caller into recordings/FILE.
---@param file string
---@param opts RecordOptions?
---@return RecordResult
function Call:record(file, opts) end

---Collects the caller's keypresses; "" if none.
---@param opts DigitOptions?
---@return string
function Call:read_digits(opts) end

---Sends the caller's audio back until the call ends.
function Call:echo() end

---Plays music on hold to the caller, looped, until call:unhold() or another media action; answers first if need be.
---@param class string? Music-on-hold class (sounds/moh/NAME.wav); default "default".
function Call:hold(class) end

---Stops the music on hold.
function Call:unhold() end

---@class ParkOptions
---@field slot integer? The slot (default: the lowest free one, 71-79).
---@field timeout number? Seconds before it rings back whoever parked it (default 45).
---@field announce boolean? Say "parked in slot N" to the caller first (default false).
---@field ringback string? The extension rung with the call when the timeout passes (default: none, the call is hung up).

---Parks the caller (answering first if need be): it hears music on hold in a slot until someone dials the slot (call:unpark) or the timeout rings back the parker. Returns the slot; the call is no longer this route's afterwards.
---@param opts ParkOptions?
---@return integer
function Call:park(opts) end

---Takes a call ringing `ext` (directed pickup) or, with nil, one ringing a member of the caller's pickup group: answered and bridged to the caller, which is no longer the route's ("answered"); "unavailable" when nothing rings.
---@param ext string?
---@return DialResult
function Call:pickup(ext) end

---Takes the call parked in `slot` and bridges it to the caller; returns when that call ends, as dial does ("unavailable" when nobody is parked there).
---@param slot integer
---@return DialResult
function Call:unpark(slot) end

---Waits (0-86400 seconds).
---@param seconds number
function Call:sleep(seconds) end

---Hangs up; the call is over.
function Call:hangup() end

---Whether the call is answered and not over (`call.state == "answered"`):
---ask before `hangup` after a `dial`, which returns once the bridged call
---has already ended.
---@return boolean
function Call:is_up() end

---Runs `handler(call, outcome)` once `route` is done (at most 64 per call).
---@param handler fun(call: Call, outcome: RouteOutcome)
function Call:on_hangup(handler) end

-- Modules ----------------------------------------------------------------------

---Logging with the call's id, context and the script's file:line.
log = {}

---@param ... any
function log.debug(...) end

---@param ... any
function log.info(...) end

---@param ... any
function log.warn(...) end

---@param ... any
function log.error(...) end

---Namespaced strings in Switchboard's storage: the only state that outlives
---a call. Namespace at most 128 bytes, key 1 KiB, value 64 KiB.
kv = {}

---@param ns string
---@param key string
---@return string?
function kv.get(ns, key) end

---@param ns string
---@param key string
---@param value string
---@param ttl number? Seconds until it expires.
function kv.set(ns, key, value, ttl) end

---@param ns string
---@param key string
---@return boolean was_set
function kv.delete(ns, key) end

---@class Contact
---@field uri string The Contact URI the phone registered.
---@field source string Where the phone is reached, "ip:port".
---@field transport string
---@field expires integer Seconds until the registration expires.

---The registrar's live bindings.
registrar = {}

---The registered contacts of extension `ext` (empty if none).
---@param ext string
---@return Contact[]
function registrar.contacts(ext) end

---@class Extension
---@field id string
---@field name string?
---@field context string
---@field did string? Its outside number in E.164 (`did` in [[extension]]).
---@field outbound boolean May call national numbers through a trunk (read by default.lua).
---@field international boolean May call international and premium numbers (read by default.lua).

---The PBX's configuration.
pbx = {}

---The extension `id`, or nil if it is not configured; an E.164 number
---(`"+15550001001"`) finds the extension whose `did` it is.
---@param id string
---@return Extension?
function pbx.extension(id) end

---What extension `ext`'s phone is doing: `"idle"`, `"ringing"` (a call
---rings it), `"busy"` (on a call) or `"unregistered"` (no registration;
---also for an unknown id). In specs, `sim.phone(ext):is_busy()` and
---`:is_unregistered()` drive it.
---@param ext string
---@return "idle"|"ringing"|"busy"|"unregistered"
function pbx.state(ext) end

---Lights (`"busy"`) or clears (`"idle"`) the busy lamp `name`, one that no
---call drives but a script (night mode on `*28`): a phone's BLF key on
---`name` watches it like an extension's (dialog event package; the
---`on_subscribe` hook decides who may), `confirmed` while busy and
---`terminated` while idle. `name` is letters, digits and `* + . _ -`, and
---no configured extension. Lamps last while the server runs, across
---reloads (set them at start from an `on_start` hook). In specs,
---`sim.lamp(name)` reads it.
---@param name string
---@param state "busy"|"idle"
function pbx.set_lamp(name, state) end

---@class VoicemailMessage
---@field id string
---@field caller string Who left it, as the caller presented itself.
---@field received integer Unix milliseconds.
---@field duration number Seconds.
---@field new boolean Not heard yet.
---@field file string The audio, for call:play (voicemail/EXT/ID.wav).

---@class MailboxCounts
---@field new integer
---@field old integer

---Voicemail boxes (audio under dialplan.voicemail, metadata in storage).
mailbox = {}

---A fresh file name in `ext`'s mailbox to record into (for save, set_greeting).
---@param ext string
---@return string
function mailbox.scratch(ext) end

---Makes the recording `file` a new message; nil if shorter than 1 s (deleted).
---@param ext string
---@param file string
---@param caller string?
---@return VoicemailMessage?
function mailbox.save(ext, file, caller) end

---The messages, oldest first.
---@param ext string
---@return VoicemailMessage[]
function mailbox.list(ext) end

---Marks message `id` heard; whether it exists.
---@param ext string
---@param id string
---@return boolean
function mailbox.heard(ext, id) end

---Deletes message `id`; whether it existed.
---@param ext string
---@param id string
---@return boolean
function mailbox.delete(ext, id) end

---How many new and old messages `ext` has.
---@param ext string
---@return MailboxCounts
function mailbox.counts(ext) end

---The recorded greeting ("busy", "unavailable", "name") for call:play, or nil.
---@param ext string
---@param kind "busy"|"unavailable"|"name"
---@return string?
function mailbox.greeting(ext, kind) end

---Makes the recording `file` greeting `kind`; false if shorter than 1 s.
---@param ext string
---@param kind "busy"|"unavailable"|"name"
---@param file string
---@return boolean
function mailbox.set_greeting(ext, kind, file) end

---Whether `pin` is `ext`'s voicemail_pin; nil if it has none.
---@param ext string
---@param pin string
---@return boolean?
function mailbox.check_pin(ext, pin) end

---@class QueueDefinition
---@field strategy "ringall"|"roundrobin"|"leastrecent"|"fewestcalls"?
---@field members string[]? Static agents.
---@field wrapup number? Seconds after a queue call before an agent is offered another.
---@field max_callers integer?
---@field leave_when_empty boolean? Refuse callers while no agent is logged in.

---@class QueueStatus
---@field position integer 1 for the next caller served.
---@field waited number Seconds.
---@field estimate number? Seconds left, once a caller was answered.

---@class QueueInfo
---@field strategy string
---@field waiting integer
---@field answered integer
---@field abandoned integer
---@field longest_wait integer Seconds.
---@field agents table<string, string> ext -> "available"|"in_call"|"wrapup"|"logged_out"

---Call queues' state, kept by the server across reloads (plugins/queue.lua drives it).
queues = {}

---Creates or updates queue `name`; waiting callers and logged-in agents stay.
---@param name string
---@param opts QueueDefinition?
function queues.define(name, opts) end

---Puts a caller at the end of the queue: its ticket, or nil and "full", "empty" or "undefined".
---@param name string
---@param call_id string
---@param from string?
---@return integer? ticket
---@return string? reason
function queues.join(name, call_id, from) end

---Where the caller stands; nil once it left the queue.
---@param name string
---@param ticket integer
---@return QueueStatus?
function queues.status(name, ticket) end

---The agents to ring for the caller now (empty: not its turn or nobody free).
---@param name string
---@param ticket integer
---@return string[]
function queues.offer(name, ticket) end

---The dial of an offer came back; answered callers leave the queue, agents start wrap-up.
---@param name string
---@param ticket integer
---@param answered boolean|string true, or the agent that answered (the dial's `answered_by`: only it is credited), or false
function queues.ring_done(name, ticket, answered) end

---The caller leaves without an agent (`abandoned`: it hung up).
---@param name string
---@param ticket integer
---@param abandoned boolean
function queues.leave(name, ticket, abandoned) end

---Logs `ext` in to queue `name`; whether it was logged out.
---@param ext string
---@param name string
---@return boolean
function queues.login(ext, name) end

---Logs `ext` out of queue `name`; whether it was logged in.
---@param ext string
---@param name string
---@return boolean
function queues.logout(ext, name) end

---Whether `ext` is logged in to queue `name`.
---@param ext string
---@param name string
---@return boolean
function queues.is_logged_in(ext, name) end

---The queue's state (as GET /api/v1/queues shows it), or nil.
---@param name string
---@return QueueInfo?
function queues.info(name) end

-- The spec runner (`switchboard test`, *_spec.lua files) ----------------------

---Declares a case of a spec file; each runs in a fresh simulation.
---@param name string
---@param fn fun()
function it(name, fn) end

---Runs `fn` before each case of the file.
---@param fn fun()
function before_each(fn) end

---Starts an expectation on a simulated call or a plain value.
---@param value SimCall|any
---@return Expectation
function expect(value) end

---The simulation: calls, phones, extensions, kv and the virtual clock.
sim = {}

---@class SimCallSpec
---@field to string The number dialled (the Request-URI's user).
---@field from string? The caller (default "anonymous").
---@field context string? Default: the caller's extension's context, else "default".
---@field caller string|false? The authenticated extension (default: `from` if it is an extension; false for none).
---@field headers table<string, string>? INVITE headers.
---@field trunk string? The call comes from this [[trunk]] (call.trunk; no caller).
---@field did string? call.did (default: `to` when it is E.164 on a trunk call).
---@field identity CallIdentity? call.identity.

---A simulated call; its route runs at the first expectation (or `run`).
---@param spec SimCallSpec
---@return SimCall
function sim.call(spec) end

---The simulated phone of extension (or URI) `ext`. By default a configured
---extension is registered and answers at once; anything else is not registered.
---@param ext string
---@return Phone
function sim.phone(ext) end

---What the lamp `name` shows (`pbx.set_lamp`): `"busy"`, `"idle"`, or nil
---if no script set it in this case.
---@param name string
---@return "busy"|"idle"|nil
function sim.lamp(name) end

---Adds an extension (pbx.extension finds it, and it is registered).
---@param ext string|{id: string, name: string?, context: string?, did: string?, outbound: boolean?, international: boolean?}
function sim.extension(ext) end

---The simulation's kv store (what the dialplan's `kv` reads and writes).
sim.kv = {}

---@param ns string
---@param key string
---@return string?
function sim.kv.get(ns, key) end

---@param ns string
---@param key string
---@param value string
---@param ttl number?
function sim.kv.set(ns, key, value, ttl) end

---@param ns string
---@param key string
---@return boolean was_set
function sim.kv.delete(ns, key) end

---The virtual clock: os.time() and os.date() read it in specs and dialplans.
---@class Clock
local Clock = {}

---Sets the clock to local time "YYYY-MM-DD HH:MM[:SS]" (or epoch seconds).
---@param when string|number
---@return Clock
function Clock:set(when) end

---Moves the clock forward.
---@param seconds number
---@return Clock
function Clock:advance(seconds) end

---The virtual time, seconds since the epoch.
---@return integer
function Clock:now() end

---@type Clock
sim.clock = Clock

---@class SimCall
local SimCall = {}

---Queues keys the caller types (0-9, *, #, A-D).
---@param keys string
---@return SimCall
function SimCall:sends_digits(keys) end

---The caller hangs up this many seconds into the call.
---@param seconds number
---@return SimCall
function SimCall:hangs_up_after(seconds) end

---Runs the route (once; expectations run it too).
---@return SimCall
function SimCall:run() end

---@class SimAction
---@field action string ring, answer, reject, redirect, hangup, sleep, dial, play, record, read_digits, echo, hold, unhold
---@field at number Seconds into the call.
---@field targets string[]? dial
---@field timeout number? dial, read_digits, sleep, record
---@field caller_id string? dial
---@field moh string? dial, hold
---@field attest string? dial
---@field file string? play, record, redirect (the URI), dial with confirm (its prompt)
---@field code integer? reject; dial's result
---@field reason string? reject
---@field status string? dial's status; record's reason
---@field digits string? read_digits' result

---What the route did, in order (runs it first).
---@return SimAction[]
function SimCall:actions() end

---@class SimResult
---@field outcome RouteOutcome|"not_run"
---@field code integer? The final status the caller got (404 if not answered, 500 on a Lua error).
---@field answered boolean
---@field failure string? The route's error, "file:line: message".
---@field actions SimAction[]

---How the route ended (runs it first).
---@return SimResult
function SimCall:result() end

---@class Phone
local Phone = {}

---Answers this many seconds after it starts ringing.
---@param seconds number
---@return Phone
function Phone:answers_after(seconds) end

---Once answered, the bridged call lasts this many seconds.
---@param seconds number
---@return Phone
function Phone:talks_for(seconds) end

---Rings until the dial's timeout.
---@return Phone
function Phone:never_answers() end

---Answers 486 Busy Here.
---@return Phone
function Phone:is_busy() end

---Is not registered.
---@return Phone
function Phone:is_unregistered() end

---Each check raises, naming the spec's file:line, when it does not hold.
---@class Expectation
local Expectation = {}

---A dial included `target`, with these options (e.g. {timeout = 20}) if given.
---@param target string
---@param opts table?
---@return Expectation
function Expectation:dialled(target, opts) end

---No dial included `target`.
---@param target string
---@return Expectation
function Expectation:not_dialled(target) end

---`file` (".wav" added if no extension) was played.
---@param file string
---@return Expectation
function Expectation:played(file) end

---The call was answered (answer, a media action, or an answered dial).
---@return Expectation
function Expectation:answered() end

---The caller got this final status (a reject, 404 if the route did not answer, 500 on a Lua error).
---@param code integer
---@return Expectation
function Expectation:rejected(code) end

---The route redirected the call (to `uri`, if given).
---@param uri string?
---@return Expectation
function Expectation:redirected(uri) end

---The route hung up.
---@return Expectation
function Expectation:hung_up() end

---The route's outcome (RouteOutcome) or the last dial's status (DialStatus) is `what`.
---@param what RouteOutcome|DialStatus
---@return Expectation
function Expectation:ended_with(what) end

---The route failed with a Lua error (containing `text`, if given).
---@param text string?
---@return Expectation
function Expectation:failed(text) end

---The value equals `want`.
---@param want any
---@return Expectation
function Expectation:equals(want) end

---The value is nil.
---@return Expectation
function Expectation:is_nil() end
