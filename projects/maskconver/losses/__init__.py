"""MaskConver losses: focal loss on center heatmaps, BCE and Dice on masks.

The task weighs them (1, 10 and 10 in the paper's recipe); these functions
return unweighted losses.
"""

from maskconver.losses.focal_loss import focal_loss
from maskconver.losses.focal_loss import focal_loss_terms
from maskconver.losses.mask_losses import DICE_EPSILON
from maskconver.losses.mask_losses import mask_bce_loss
from maskconver.losses.mask_losses import mask_dice_loss
from maskconver.losses.mask_losses import mean_over_valid
from maskconver.losses.mask_losses import per_mask_bce
from maskconver.losses.mask_losses import per_mask_dice
