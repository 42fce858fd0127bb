"""splitdns: names that stand for pods of this cluster answered with the pods' own addresses
(split DNS beside a clustered database's servers, or for its clients in the cluster DNS)."""

from interkube.plugin.setup import Plugin, deferred
from interkube.plugins.splitdns.parse import parse

PLUGIN = Plugin(name="splitdns", parse=parse, setup=deferred("interkube.plugins.splitdns.setup"))
