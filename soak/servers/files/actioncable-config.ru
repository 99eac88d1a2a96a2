# An ActionCable server (Debian ruby-actioncable 6.1 under puma) with no
# Rails app: soak's real server for `protocol = "actioncable"` (`soak server
# actioncable`, the tests). Mounted at /cable; one channel, HeartbeatChannel.
#
# Environment (set by soak.servers.actioncable from the recipe's options):
#   BEAT_INTERVAL     seconds between its pings (ActionCable's BEAT_INTERVAL, 3)
#   TOKEN             if set, the upgrade's ?token= must match (else
#                     disconnect "unauthorized", reconnect false)
#   DISCONNECT_AFTER  seconds: then each connection gets disconnect
#                     "server_restart" (reconnect true) and a close
#   REJECT            "true": every subscription is rejected
require "action_cable"
require "logger"

beat = ENV.fetch("BEAT_INTERVAL", "3")
unless beat.match?(/\A[0-9]+(\.[0-9]+)?\z/) && beat.to_f > 0
  abort "BEAT_INTERVAL: expected seconds > 0, got #{beat.inspect}"
end
ActionCable::Server::Connections.send(:remove_const, :BEAT_INTERVAL)
ActionCable::Server::Connections.const_set(:BEAT_INTERVAL, beat.to_f)

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    def connect
      token = ENV.fetch("TOKEN", "")
      reject_unauthorized_connection if !token.empty? && request.params["token"] != token
      after = ENV.fetch("DISCONNECT_AFTER", "")
      return if after.empty?
      Thread.new do
        sleep after.to_f
        close(reason: "server_restart", reconnect: true)
      rescue StandardError
        nil
      end
    end
  end
end

class HeartbeatChannel < ActionCable::Channel::Base
  def subscribed
    reject if ENV["REJECT"] == "true"
    stream_from "heartbeat"
  end
end

ActionCable.server.config.cable = { "adapter" => "async" }
ActionCable.server.config.logger = Logger.new($stdout, level: Logger::WARN)
ActionCable.server.config.disable_request_forgery_protection = true
ActionCable.server.config.connection_class = -> { ApplicationCable::Connection }
$stdout.sync = true
puts "actioncable #{ActionCable.version} on /cable (pings every #{beat} s)"

map("/cable") { run ActionCable.server }
