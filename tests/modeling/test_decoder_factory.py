"""The decoder registry: MaskConver's builders beside Model Garden's."""

import pytest
import tensorflow as tf

from official.core import exp_factory
from official.core import registry
from official.vision.modeling.decoders import factory as vision_decoder_factory

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.modeling.decoders import convnext_unet
from maskconver.modeling.decoders import factory as decoder_factory

_SPECS = {str(l): tf.TensorShape([None, 64 // 2 ** l, 64 // 2 ** l, 8])
          for l in range(2, 6)}


def _model_config(decoder_type):
  config = exp_factory.get_exp_config('maskconver_synthetic').task.model
  config.override({'decoder': {'type': decoder_type}})
  return config


@pytest.mark.parametrize('name', ['convnext_unet', 'bifpn', 'deeplabv3plus',
                                  'fpn', 'aspp', 'nasfpn', 'identity'])
def test_every_decoder_type_is_registered(name):
  # pylint: disable-next=protected-access
  assert registry.lookup(vision_decoder_factory._REGISTERED_DECODER_CLS, name)


def test_build_decoder_looks_the_type_up():
  config = _model_config('convnext_unet')
  config.decoder.convnext_unet.num_blocks = [1, 1, 1]
  config.decoder.convnext_unet.num_filters = [8, 8, 8]
  decoder = decoder_factory.build_decoder(_SPECS, config)
  assert isinstance(decoder, convnext_unet.ConvNeXtUNet)
  assert decoder_factory.build_decoder(_SPECS,
                                       _model_config('identity')) is None


def test_an_unknown_type_names_it():
  config = _model_config('convnext_unet')
  config.decoder.type = 'no_such_decoder'
  with pytest.raises(LookupError, match='no_such_decoder'):
    decoder_factory.build_decoder(_SPECS, config)
